use super::*;
use crate::{Admission, Limits};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn frames(input: &[u8], chunk: usize) -> Result<Vec<usize>, FramingError> {
    // The request lengths `input` splits into, fed `chunk` bytes at a time.
    let mut out = Vec::new();
    let mut f = Framing::default();
    let mut len = 0;
    let mut at = 0;
    while at < input.len() {
        let end = (at + chunk).min(input.len());
        let used = f.feed(&input[at..end])?;
        len += used;
        at += used;
        if f.is_complete() {
            out.push(len);
            len = 0;
            f = Framing::default();
        } else if used == 0 {
            break;
        }
    }
    Ok(out)
}

#[test]
fn requests_end_at_the_empty_line_plus_their_content_length() {
    let get = b"GET /serverinfo HTTP/1.1\r\nHost: x\r\n\r\n";
    let post = b"POST /api/login HTTP/1.1\r\nContent-Length:  5 \r\nHost: x\r\n\r\nhello";
    let mut all = Vec::new();
    all.extend_from_slice(get);
    all.extend_from_slice(post);
    all.extend_from_slice(b"\r\nGET / HTTP/1.0\n\n");
    for chunk in [1, 3, 7, 4096] {
        assert_eq!(
            frames(&all, chunk).unwrap(),
            vec![get.len(), post.len(), 18],
            "chunk {chunk}"
        );
    }
}

#[test]
fn chunked_bodies_end_after_their_last_chunk_and_trailers() {
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
    let get = b"GET / HTTP/1.1\r\n\r\n";
    let all = [&chunked[..], &get[..]].concat();
    for chunk in [1, 5, 4096] {
        assert_eq!(frames(&all, chunk).unwrap(), vec![chunked.len(), get.len()]);
    }
    let bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(frames(bad, 4096), Err(FramingError::BadChunk));
}

#[test]
fn transfer_encoding_and_bad_lengths_are_refused() {
    let te = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(frames(te, 4096), Err(FramingError::TransferEncoding));
    for bad in ["-1", "1e3", "", "12 34", "99999999999999999999999"] {
        let req = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
        assert_eq!(
            frames(req.as_bytes(), 4096),
            Err(FramingError::BadLength),
            "{bad:?}"
        );
    }
}

#[test]
fn long_lines_are_no_problem() {
    let big = "a".repeat(100_000);
    let req = format!("GET /?x={big} HTTP/1.1\r\nX-Big: {big}\r\n\r\n");
    assert_eq!(frames(req.as_bytes(), 8192).unwrap(), vec![req.len()]);
}

proptest! {
    #[test]
    fn framing_never_panics_and_never_takes_more_than_it_is_given(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
    ) {
        let mut f = Framing::default();
        for part in input.chunks(chunk) {
            match f.feed(part) {
                Ok(n) => prop_assert!(n <= part.len()),
                Err(_) => break,
            }
            if f.is_complete() {
                f = Framing::default();
            }
        }
    }
}

fn slot() -> crate::Slot {
    Admission::new(Limits::PLAIN)
        .admit("127.0.0.1".parse().unwrap())
        .unwrap()
}

#[tokio::test]
async fn the_next_request_waits_until_the_reply_is_written() {
    let (mut peer, server_side) = tokio::io::duplex(64 * 1024);
    let mut server = OneAtATime::new(server_side, slot(), Duration::from_secs(5));
    let one = b"GET /1 HTTP/1.1\r\n\r\n";
    let two = b"GET /2 HTTP/1.1\r\n\r\n";
    peer.write_all(&[&one[..], &two[..]].concat())
        .await
        .unwrap();

    let mut buf = vec![0u8; 1024];
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], one, "only the first request");
    // Nothing more until the server answers.
    let again = tokio::time::timeout(Duration::from_millis(50), server.read(&mut buf)).await;
    assert!(again.is_err(), "the second request came before the reply");
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    server.flush().await.unwrap();
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], two);
}

#[tokio::test]
async fn a_peer_that_goes_away_while_its_request_is_held_is_seen() {
    let (mut peer, server_side) = tokio::io::duplex(1024);
    let mut server = OneAtATime::new(server_side, slot(), Duration::from_secs(5));
    let req = b"GET /held HTTP/1.1\r\n\r\n";
    peer.write_all(req).await.unwrap();
    let mut buf = vec![0u8; 1024];
    assert_eq!(server.read(&mut buf).await.unwrap(), req.len());
    drop(peer);
    let n = tokio::time::timeout(Duration::from_secs(1), server.read(&mut buf))
        .await
        .expect("the end of the stream is passed on")
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_reads_nothing_is_closed_after_the_limit() {
    let (mut peer, server_side) = tokio::io::duplex(64);
    let mut server = OneAtATime::new(server_side, slot(), Duration::from_secs(15));
    let req = b"GET / HTTP/1.1\r\n\r\n";
    peer.write_all(req).await.unwrap();
    let mut buf = vec![0u8; 64];
    assert_eq!(server.read(&mut buf).await.unwrap(), req.len());
    let err = server.write_all(&[b'x'; 4096]).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
}

#[tokio::test]
async fn an_evicted_connection_fails_its_next_read() {
    let door = Admission::new(Limits {
        per_address: 1,
        total: 4,
    });
    let ip = "10.0.0.1".parse().unwrap();
    let (_peer, server_side) = tokio::io::duplex(64);
    let mut server = OneAtATime::new(server_side, door.admit(ip).unwrap(), Duration::from_secs(5));
    let mut buf = vec![0u8; 64];
    let read = server.read(&mut buf);
    let evict = async {
        tokio::task::yield_now().await;
        door.admit(ip).unwrap()
    };
    let (read, _newer) = tokio::join!(read, evict);
    assert_eq!(read.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
}

#[tokio::test]
async fn an_answer_before_the_body_has_arrived_does_not_hold_the_next_request() {
    let (mut peer, server_side) = tokio::io::duplex(64 * 1024);
    let mut server = OneAtATime::new(server_side, slot(), Duration::from_secs(5));
    let head = b"POST /big HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
    peer.write_all(head).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], head);
    // The server refuses the body before it is all there.
    server
        .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        .await
        .unwrap();
    server.flush().await.unwrap();
    let next = b"GET /next HTTP/1.1\r\n\r\n";
    peer.write_all(&[&b"0123456789"[..], &next[..]].concat())
        .await
        .unwrap();
    let n = server.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"0123456789");
    // The server's loop flushes after each pass; then the next request.
    server.flush().await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(1), server.read(&mut buf))
        .await
        .expect("the next request is not held back")
        .unwrap();
    assert_eq!(&buf[..n], next);
}
