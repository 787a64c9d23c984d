set terminal svg size 900,460 dynamic font 'sans,11'
set output '/work/main/bench/results/soak/soak.svg'
set title 'lopache soak: 30 min of churn (grey: reloads, red: Redis restart)'
set xlabel 'minutes'
set ylabel 'RSS of the workers (MB; two during a reload)'
set y2label 'count'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key below horizontal
set arrow from first 1.25, graph 0 to first 1.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 2.25, graph 0 to first 2.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 3.25, graph 0 to first 3.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 4.25, graph 0 to first 4.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 5.25, graph 0 to first 5.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 6.25, graph 0 to first 6.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 7.25, graph 0 to first 7.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 8.25, graph 0 to first 8.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 9.25, graph 0 to first 9.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 10.25, graph 0 to first 10.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 11.25, graph 0 to first 11.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 12.25, graph 0 to first 12.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 13.25, graph 0 to first 13.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 14.25, graph 0 to first 14.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 15.25, graph 0 to first 15.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 16.25, graph 0 to first 16.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 17.25, graph 0 to first 17.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 18.25, graph 0 to first 18.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 19.25, graph 0 to first 19.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 20.25, graph 0 to first 20.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 21.25, graph 0 to first 21.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 22.25, graph 0 to first 22.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 23.25, graph 0 to first 23.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 24.25, graph 0 to first 24.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 25.25, graph 0 to first 25.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 26.25, graph 0 to first 26.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 27.25, graph 0 to first 27.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 28.25, graph 0 to first 28.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 29.25, graph 0 to first 29.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 30.25, graph 0 to first 30.25, graph 1 nohead lc rgb '#cccccc' lw 1
set arrow from first 15.25, graph 0 to first 15.25, graph 1 nohead lc rgb '#cc0000' lw 2
plot '/work/main/bench/results/soak/soak.dat' using 1:2 with lines lw 2 title 'RSS (MB)', \
     '' using 1:3 axes x1y2 with lines title 'file descriptors', \
     '' using 1:4 axes x1y2 with lines title 'CLOSE-WAIT', \
     '' using 1:5 axes x1y2 with lines title 'idle upstream conns', \
     '' using 1:6 axes x1y2 with lines title 'pool keys', \
     '' using 1:7 axes x1y2 with lines title 'DNS entries'
