set terminal svg size 900,420 font "sans,12"
set output "bench/results/latest.svg"
set title "Requests per second (median of repetitions), 2026-12-07 11:53 UTC"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key autotitle columnhead outside right top
set ylabel "req/s"
set grid ytics
set yrange [0:*]
plot for [i=2:9] "bench/results/chart.dat" using i:xtic(1)
