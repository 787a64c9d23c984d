//! Arrival watch: tells, without a system call, whether bytes (or a close)
//! have reached one socket since the watch was last re-armed.
//!
//! It is a small io_uring of its own, apart from the runtime's, holding one
//! poll on the socket. The ring is set up without COOP_TASKRUN or
//! DEFER_TASKRUN, so when the socket becomes readable the kernel queues the
//! poll's completion as signal-like task work on this thread, and posts it
//! before the thread next returns to user code, whatever it was doing (a
//! system call, waiting in either runtime driver, or being interrupted). So
//! if bytes reached the watched socket before some other socket's bytes
//! that this thread has since read, the completion is already in the ring
//! when the thread looks: reading the ring's tail answers what a
//! `recv(MSG_PEEK)` would, for the cost of a memory load.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types::Fd, IoUring};

/// What makes the poll fire: bytes, the peer closing, or an error.
const EVENTS: u32 = (libc::POLLIN | libc::POLLRDHUP | libc::POLLERR | libc::POLLHUP) as u32;

pub struct ArrivalWatch {
    ring: IoUring,
    fd: RawFd,
    /// A poll was submitted since the ring was last drained. Until it
    /// fires the ring stays empty; once it has, the ring holds its
    /// completion.
    armed: bool,
}

impl ArrivalWatch {
    /// A watch on `fd`, not yet armed (so not quiet until `rearm`). Must
    /// be made on the thread that asks it (the completions are that
    /// thread's task work). An error where io_uring is missing or refused:
    /// the caller then peeks instead.
    pub fn new(fd: RawFd) -> io::Result<ArrivalWatch> {
        Ok(ArrivalWatch {
            ring: IoUring::new(4)?,
            fd,
            armed: false,
        })
    }

    /// Nothing has arrived since the watch was last armed. No system call.
    pub fn quiet(&mut self) -> bool {
        self.armed && self.ring.completion().is_empty()
    }

    /// Forgets what arrived and watches for what comes next (nothing to do
    /// if nothing did). A one-shot poll: the kernel checks the socket as it
    /// arms one, so bytes that came in since the caller last read, or that
    /// it left unread, fire it at once. After an error the watch is not
    /// quiet until a later call succeeds.
    pub fn rearm(&mut self) -> io::Result<()> {
        if self.quiet() {
            return Ok(());
        }
        self.ring.completion().for_each(drop);
        self.armed = false;
        // A poll whose submission failed last time is still queued: submit
        // that one rather than queue another.
        if self.ring.submission().is_empty() {
            let poll = opcode::PollAdd::new(Fd(self.fd), EVENTS).build();
            // SAFETY: the entry points at no memory of ours, only at `fd`,
            // and the poll holds its own reference to that file.
            unsafe { self.ring.submission().push(&poll) }
                .map_err(|_| io::Error::other("arrival watch: submission queue full"))?;
        }
        self.ring.submit()?;
        self.armed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ArrivalWatch;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;

    /// A connected loopback TCP pair: (the side lopache holds, the peer).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (ours, peer)
    }

    #[test]
    fn bytes_and_a_close_are_seen_until_rearmed_after_reading() {
        let (mut ours, mut peer) = pair();
        let mut watch = ArrivalWatch::new(ours.as_raw_fd()).unwrap();
        assert!(!watch.quiet(), "not armed yet");
        watch.rearm().unwrap();
        assert!(watch.quiet());
        watch.rearm().unwrap();
        assert!(watch.quiet());

        peer.write_all(b"x").unwrap();
        // Seen as soon as the write returns: no wait, no system call here.
        assert!(!watch.quiet());
        // Re-armed with the byte still unread: fires again at once.
        watch.rearm().unwrap();
        assert!(!watch.quiet());
        let mut byte = [0u8; 1];
        ours.read_exact(&mut byte).unwrap();
        watch.rearm().unwrap();
        assert!(watch.quiet());

        drop(peer);
        assert!(!watch.quiet());
    }

    /// What the route cache relies on: bytes that reached the watched
    /// socket before bytes this thread then read from another socket are
    /// seen by the time that read returns, though another thread sent both.
    #[test]
    fn what_arrived_before_a_later_read_is_always_seen() {
        const ROUNDS: usize = 2_000;
        let (mut watched, mut watched_peer) = pair();
        let (mut client, mut client_peer) = pair();
        let (go, went) = mpsc::channel::<()>();
        let sender = std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                went.recv().unwrap();
                watched_peer.write_all(b"r").unwrap();
                client_peer.write_all(b"q").unwrap();
            }
        });
        let mut watch = ArrivalWatch::new(watched.as_raw_fd()).unwrap();
        watch.rearm().unwrap();
        let mut byte = [0u8; 1];
        for round in 0..ROUNDS {
            assert!(watch.quiet(), "round {round}: quiet before the send");
            go.send(()).unwrap();
            client.read_exact(&mut byte).unwrap();
            assert!(!watch.quiet(), "round {round}: an arrival went unseen");
            watched.read_exact(&mut byte).unwrap();
            watch.rearm().unwrap();
        }
        sender.join().unwrap();
    }
}
