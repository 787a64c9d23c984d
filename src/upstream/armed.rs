//! An idle keep-alive connection with a receive already posted, as nginx
//! keeps a read event armed on its cached upstream connections: bytes or a
//! close the backend sends while the connection sits idle complete that
//! receive, which marks the connection unusable, and the request that takes
//! a quiet one gets its response's first bytes from the same receive. So a
//! reuse costs no liveness system call (a `recv(MSG_PEEK)`, about 3 % of a
//! proxied request's CPU), and bytes a backend sent unasked are still never
//! read as the next request's answer.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use crate::io::timed::{with_deadline, IoFailure};

/// The buffer a posted receive fills: a backend's response head usually
/// fits, and the response's reads grow it for larger ones.
pub const RESPONSE_HEAD_BUFFER: usize = 8 * 1024;

/// A finished receive: its result, the buffer, and the read half back.
type Received = (io::Result<usize>, BytesMut, OwnedReadHalf<TcpStream>);

enum Receive {
    /// Posted, not yet seen to complete.
    Posted(Pin<Box<dyn Future<Output = Received>>>),
    /// Completed, kept until the connection is put back together or dropped
    /// (a completed future must not be polled again). Boxed: rare, and
    /// every upstream connection's size would carry it.
    Done(Box<Received>),
    /// Handed out by [`Armed::finish`].
    Spent,
}

/// A plain TCP connection split in two: the read half inside a posted
/// receive, the write half free for the next request.
pub struct Armed {
    receive: Receive,
    write: Option<OwnedWriteHalf<TcpStream>>,
    fd: RawFd,
}

/// Polls `fut` once, without waiting: a wake-up for this poll goes nowhere,
/// and the next real `.await` registers its own waker.
fn poll_now<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

impl Armed {
    /// Posts a receive into `buf` on `stream`. `None` if the backend already
    /// sent something or closed (the driver may complete the receive at
    /// once): such a connection is not kept.
    pub fn arm(stream: TcpStream, buf: BytesMut) -> Option<Armed> {
        let fd = stream.as_raw_fd();
        let (mut read, write) = stream.into_split();
        let mut posted: Pin<Box<dyn Future<Output = Received>>> = Box::pin(async move {
            let (res, buf) = read.read(buf).await;
            (res, buf, read)
        });
        // The first poll creates the operation (io_uring: queues the SQE,
        // submitted with the shard's next batch; epoll: tries the read and
        // registers for readiness).
        if poll_now(posted.as_mut()).is_ready() {
            return None;
        }
        Some(Armed {
            receive: Receive::Posted(posted),
            write: Some(write),
            fd,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the receive completed (the backend sent something or
    /// closed, or the read failed), as far as the shard has seen.
    pub fn received(&mut self) -> bool {
        match &mut self.receive {
            Receive::Posted(fut) => match poll_now(fut.as_mut()) {
                Poll::Ready(done) => {
                    self.receive = Receive::Done(Box::new(done));
                    true
                }
                Poll::Pending => false,
            },
            Receive::Done(_) | Receive::Spent => true,
        }
    }

    /// The write half, for the request.
    pub fn writer(&mut self) -> io::Result<&mut OwnedWriteHalf<TcpStream>> {
        self.write.as_mut().ok_or_else(spent)
    }

    /// Waits (within `limit`) for the receive to complete and puts the
    /// connection back together: the stream, and the receive's byte count
    /// with the buffer holding those bytes.
    pub async fn finish(
        &mut self,
        limit: Option<std::time::Duration>,
    ) -> Result<(TcpStream, io::Result<usize>, BytesMut), IoFailure> {
        let (res, buf, read) = match std::mem::replace(&mut self.receive, Receive::Spent) {
            Receive::Posted(mut fut) => match with_deadline(limit, &mut fut).await {
                Ok(done) => done,
                Err(timeout) => {
                    // Still posted: dropping it cancels the receive.
                    self.receive = Receive::Posted(fut);
                    return Err(timeout);
                }
            },
            Receive::Done(done) => *done,
            Receive::Spent => return Err(IoFailure::Io(spent())),
        };
        let write = self.write.take().ok_or_else(spent)?;
        let stream = read
            .reunite(write)
            .map_err(|_| io::Error::other("the halves of an armed connection did not match"))?;
        Ok((stream, res, buf))
    }
}

fn spent() -> io::Error {
    io::Error::other("an armed connection was used after its receive was handed out")
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    use monoio::io::AsyncWriteRentExt;

    use super::*;

    /// Runs `test` on the epoll driver, and on io_uring where the kernel has it.
    fn on_each_driver<Fut: Future<Output = ()>>(test: impl Fn() -> Fut) {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(test());
        if let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
        {
            rt.block_on(test());
        }
    }

    /// A connection armed on our side, and the backend's end of it.
    fn armed_pair() -> (Armed, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        theirs
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let armed = Armed::arm(
            TcpStream::from_std(ours).unwrap(),
            BytesMut::with_capacity(64),
        );
        (armed.expect("a quiet connection arms"), theirs)
    }

    /// Waits (runtime turns, not a guess) until the shard has seen the
    /// receive complete.
    async fn until_received(armed: &mut Armed) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !armed.received() {
            assert!(Instant::now() < deadline, "the receive never completed");
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[test]
    fn a_request_goes_out_while_armed_and_its_answer_comes_in_the_posted_receive() {
        on_each_driver(|| async {
            let (mut armed, mut theirs) = armed_pair();
            assert!(!armed.received(), "quiet while nothing was sent");
            let (res, _) = armed.writer().unwrap().write_all(b"GET /").await;
            res.unwrap();
            let mut got = [0u8; 5];
            theirs.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"GET /");
            theirs.write_all(b"answer").unwrap();
            let (mut stream, n, buf) = armed.finish(Some(Duration::from_secs(10))).await.unwrap();
            assert_eq!((n.unwrap(), &buf[..]), (6, &b"answer"[..]));
            // Back together: the stream reads and writes as before.
            let (res, _) = stream.write_all(b"more").await;
            res.unwrap();
            theirs.read_exact(&mut got[..4]).unwrap();
            assert_eq!(&got[..4], b"more");
            assert!(armed.finish(None).await.is_err(), "handed out once");
        });
    }

    #[test]
    fn bytes_or_a_close_while_idle_complete_the_receive() {
        on_each_driver(|| async {
            let (mut armed, mut theirs) = armed_pair();
            theirs.write_all(b"unasked").unwrap();
            until_received(&mut armed).await;
            assert!(armed.received(), "and stays so");
            let (_, n, buf) = armed.finish(None).await.unwrap();
            assert_eq!((n.unwrap(), &buf[..]), (7, &b"unasked"[..]));

            let (mut armed, theirs) = armed_pair();
            drop(theirs);
            until_received(&mut armed).await;
            let (_, n, _) = armed.finish(None).await.unwrap();
            assert_eq!(n.unwrap(), 0, "the backend's FIN");
        });
    }

    #[test]
    fn dropping_an_armed_connection_closes_it() {
        on_each_driver(|| async {
            let (armed, mut theirs) = armed_pair();
            drop(armed);
            // The posted receive is cancelled and the socket closed, not
            // only shut down for writing (the write half does that at
            // once): what the backend sends then is answered with a reset.
            theirs.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let wrote = theirs.write(b"x");
                let read = theirs.read(&mut [0u8; 1]);
                let reset = |e: &io::Error| {
                    matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    )
                };
                if wrote.as_ref().is_err_and(reset) || read.as_ref().is_err_and(reset) {
                    break;
                }
                assert!(Instant::now() < deadline, "never closed");
                // The runtime submits the cancel on its turn.
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
}
