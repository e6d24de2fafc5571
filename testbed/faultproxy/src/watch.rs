//! Watch responses: the upstream stream is cut into events and forwarded one event per
//! chunk, so the proxy can end a watch, or put an ERROR event in it, at an event boundary
//! whenever a test asks (`end_watches`, `expire_watches`, `EndWatchEarly`), as the API
//! server itself ends watches.

use bytes::{Buf, Bytes, BytesMut};
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{broadcast, mpsc};

use crate::{BoxError, ProxyBody};

/// What the test asks of every watch open now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// End the stream cleanly.
    End,
    /// Send a 410 `Expired` ERROR event, then end the stream.
    Expire,
}

/// How events are delimited in a watch body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// JSON (and YAML-less Table) watches: one JSON document per line.
    Lines,
    /// Protobuf watches (`application/vnd.kubernetes.protobuf;stream=watch`): each frame
    /// is a 4-byte big-endian length and that many bytes.
    LengthPrefixed,
}

impl Framing {
    fn of(content_type: Option<&header::HeaderValue>) -> Framing {
        let protobuf = content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("protobuf"));
        if protobuf {
            Framing::LengthPrefixed
        } else {
            Framing::Lines
        }
    }
}

/// Cuts a byte stream into whole events.
struct Splitter {
    framing: Framing,
    buf: BytesMut,
}

impl Splitter {
    fn new(framing: Framing) -> Self {
        Splitter {
            framing,
            buf: BytesMut::new(),
        }
    }

    /// Adds `data`; returns the events it completes.
    fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(data);
        let mut events = Vec::new();
        loop {
            let len = match self.framing {
                Framing::Lines => match self.buf.iter().position(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None => break,
                },
                Framing::LengthPrefixed => {
                    if self.buf.len() < 4 {
                        break;
                    }
                    let n = (&self.buf[..4]).get_u32() as usize;
                    if self.buf.len() < 4 + n {
                        break;
                    }
                    4 + n
                }
            };
            events.push(self.buf.split_to(len).freeze());
        }
        events
    }

    /// What is left of an incomplete event.
    fn rest(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// What the proxy does with one watch.
pub struct Plan {
    /// End the stream after this many events (`Fault::EndWatchEarly`).
    pub end_after: Option<u32>,
    /// Commands from `end_watches` / `expire_watches`, subscribed when the request came in.
    pub commands: broadcast::Receiver<Command>,
    /// The ERROR event `expire_watches` sends.
    pub expired_event: Bytes,
}

type Item = Result<Frame<Bytes>, BoxError>;

/// Forwards an upstream watch response event by event, under `plan`.
pub fn forward(response: Response<Incoming>, plan: Plan) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    if parts.status != StatusCode::OK {
        return Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
    }
    let framing = Framing::of(parts.headers.get(header::CONTENT_TYPE));
    parts.headers.remove(header::CONTENT_LENGTH);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pump(body, tx, Splitter::new(framing), plan));
    Response::from_parts(parts, channel_body(rx))
}

/// A 200 watch answer of one 410 `Expired` ERROR event (`Fault::WatchGone`).
pub fn gone(expired_event: Bytes) -> Response<ProxyBody> {
    let (tx, rx) = mpsc::channel::<Item>(1);
    // The channel has room for the one event; the body ends when `tx` is dropped.
    let _ = tx.try_send(Ok(Frame::data(expired_event)));
    drop(tx);
    let mut response = Response::new(channel_body(rx));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A streamed body fed by a channel: each item becomes one chunk, sent as it comes.
fn channel_body(mut rx: mpsc::Receiver<Item>) -> ProxyBody {
    StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))).boxed_unsync()
}

async fn pump(mut upstream: Incoming, tx: mpsc::Sender<Item>, mut splitter: Splitter, plan: Plan) {
    let Plan {
        end_after,
        mut commands,
        expired_event,
    } = plan;
    if end_after == Some(0) {
        return;
    }
    let mut sent = 0u32;
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Ok(Command::End) | Err(broadcast::error::RecvError::Closed) => return,
                Ok(Command::Expire) => {
                    // Only a JSON stream can carry the JSON event; a protobuf one just ends.
                    if splitter.framing == Framing::Lines {
                        let _ = tx.send(Ok(Frame::data(expired_event))).await;
                    }
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
            },
            () = tx.closed() => return,
            frame = upstream.frame() => match frame {
                None => {
                    if let Some(rest) = splitter.rest() {
                        let _ = tx.send(Ok(Frame::data(rest))).await;
                    }
                    return;
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    for event in splitter.push(&data) {
                        if tx.send(Ok(Frame::data(event))).await.is_err() {
                            return;
                        }
                        sent += 1;
                        if end_after == Some(sent) {
                            return;
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_across_chunks() {
        let mut s = Splitter::new(Framing::Lines);
        assert!(s.push(b"{\"type\":\"ADD").is_empty());
        let events = s.push(b"ED\"}\n{\"a\":1}\n{\"b\"");
        assert_eq!(
            events,
            vec![
                Bytes::from_static(b"{\"type\":\"ADDED\"}\n"),
                Bytes::from_static(b"{\"a\":1}\n")
            ]
        );
        assert_eq!(s.rest(), Some(Bytes::from_static(b"{\"b\"")));
        assert_eq!(s.rest(), None);
    }

    #[test]
    fn length_prefixed_frames() {
        let mut s = Splitter::new(Framing::LengthPrefixed);
        assert!(s.push(&[0, 0, 0]).is_empty());
        assert!(s.push(&[3, b'a']).is_empty());
        let events = s.push(&[b'b', b'c', 0, 0, 0, 1, b'd', 0]);
        assert_eq!(
            events,
            vec![
                Bytes::from_static(&[0, 0, 0, 3, b'a', b'b', b'c']),
                Bytes::from_static(&[0, 0, 0, 1, b'd'])
            ]
        );
        assert_eq!(s.rest(), Some(Bytes::from_static(&[0])));
    }

    #[test]
    fn framing_from_content_type() {
        let json = header::HeaderValue::from_static("application/json");
        let pb =
            header::HeaderValue::from_static("application/vnd.kubernetes.protobuf;stream=watch");
        assert_eq!(Framing::of(Some(&json)), Framing::Lines);
        assert_eq!(Framing::of(None), Framing::Lines);
        assert_eq!(Framing::of(Some(&pb)), Framing::LengthPrefixed);
    }
}
