//! MQTT over WebSockets (MQTT 5.0 section 6, 3.1.1 section 6): the HTTP upgrade and the frames
//! are tokio-tungstenite's; this file turns its message stream into the byte stream the client
//! reads and writes, so nothing above the transport changes.
//!
//! Each write of the client (one or more whole packets) goes out as one binary frame; binary
//! frames read are joined into one byte stream, so a packet may span frames and a frame may
//! hold several packets (MQTT-6.0.0-2). A text frame ends the connection (MQTT-6.0.0-1). The
//! subprotocol offered is `mqtt` (MQTT-6.0.0-3), and a server that answers another is refused.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The WebSocket subprotocol of MQTT 3.1.1 and 5.0.
const SUBPROTOCOL: &str = "mqtt";

/// Runs the upgrade over `stream` (TCP, or TLS over it) to `url` (`ws://host:port/path` or
/// `wss://...`; the scheme only names the request's host) and returns the two halves.
pub(crate) async fn upgrade<S>(stream: S, url: &str) -> io::Result<(WsReader<S>, WsWriter<S>)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut request = url.into_client_request().map_err(invalid)?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
    let (socket, response) = tokio_tungstenite::client_async(request, stream).await.map_err(invalid)?;
    let chosen = response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok());
    if chosen.is_some_and(|p| !p.eq_ignore_ascii_case(SUBPROTOCOL)) {
        let chosen = chosen.unwrap_or_default().to_owned();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the server chose the WebSocket subprotocol {chosen:?}, not {SUBPROTOCOL:?}"),
        ));
    }
    let (sink, stream) = socket.split();
    Ok((WsReader { stream, pending: Bytes::new(), closed: false }, WsWriter { sink, framed: None }))
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {error}"))
}

/// The reading half: binary frames as one byte stream.
pub(crate) struct WsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    /// What is left of the last binary frame.
    pending: Bytes,
    /// A close frame or the end of the stream came.
    closed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsReader<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() && !this.closed {
            match ready!(Pin::new(&mut this.stream).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = Bytes::from(data),
                // Answered by tungstenite on the next write or flush.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.closed = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(invalid("a text frame, where MQTT is binary (MQTT-6.0.0-1)")))
                }
                Some(Err(error)) => return Poll::Ready(Err(invalid(error))),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// The writing half: each write one binary frame, on the socket before the write is done.
pub(crate) struct WsWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    /// The length of a write already framed whose flush was pending: the client writes like
    /// over TCP, without flushing, and retries a pending write with the same bytes, so the
    /// frame must reach the socket before the write counts, and is not framed twice.
    framed: Option<usize>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsWriter<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.framed.is_none() {
            ready!(Pin::new(&mut this.sink).poll_ready(cx)).map_err(invalid)?;
            Pin::new(&mut this.sink).start_send(Message::Binary(data.to_vec())).map_err(invalid)?;
            this.framed = Some(data.len());
        }
        ready!(Pin::new(&mut this.sink).poll_flush(cx)).map_err(invalid)?;
        Poll::Ready(Ok(this.framed.take().unwrap_or_default()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sink).poll_flush(cx).map_err(invalid)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sink).poll_close(cx).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::SinkExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    use super::*;

    /// A server that answers the upgrade with `subprotocol` (if any) and hands over its side.
    // tungstenite's handshake callback returns its own (large) HTTP error response type.
    #[allow(clippy::result_large_err)]
    async fn pair(
        subprotocol: Option<&'static str>,
    ) -> (io::Result<(WsReader<TcpStream>, WsWriter<TcpStream>)>, Server) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/mqtt", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let offered = std::sync::Arc::new(std::sync::Mutex::new(None));
            let seen = std::sync::Arc::clone(&offered);
            let callback = move |request: &Request, mut response: Response| {
                let protocol = request.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap().to_owned());
                *seen.lock().unwrap() = Some((request.uri().path().to_owned(), protocol));
                if let Some(chosen) = subprotocol {
                    response.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(chosen));
                }
                Ok(response)
            };
            let socket = tokio_tungstenite::accept_hdr_async(socket, callback).await.expect("upgrade");
            let offered = offered.lock().unwrap().take().expect("a request");
            (socket, offered)
        });
        let stream =
            TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches("/mqtt")).await.expect("connect");
        let client = upgrade(stream, &url).await;
        let (socket, offered) = server.await.expect("server");
        (client, Server { socket, offered })
    }

    struct Server {
        socket: WebSocketStream<TcpStream>,
        /// The request's path and its Sec-WebSocket-Protocol header.
        offered: (String, Option<String>),
    }

    #[tokio::test]
    async fn offers_mqtt_and_writes_each_write_as_one_binary_frame_mqtt_6_0_0_3() {
        let (client, mut server) = pair(Some("mqtt")).await;
        let (_reader, mut writer) = client.expect("upgraded");
        assert_eq!(server.offered, ("/mqtt".to_owned(), Some("mqtt".to_owned())));
        // No flush: the client writes as over TCP, and a write is on the socket when it is done.
        writer.write_all(b"\x10\x0cpacket-bytes").await.expect("write");
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), server.socket.next()).await;
        let frame = frame.expect("the frame is on the socket without a flush").expect("a frame").expect("valid");
        assert_eq!(frame, Message::Binary(b"\x10\x0cpacket-bytes".to_vec()));
    }

    /// MQTT-6.0.0-2: a packet may span frames, and a frame may hold several packets.
    #[tokio::test]
    async fn binary_frames_are_read_as_one_byte_stream_mqtt_6_0_0_2() {
        let (client, mut server) = pair(Some("mqtt")).await;
        let (mut reader, _writer) = client.expect("upgraded");
        for frame in [&b"\x20"[..], b"\x02\x00", b"", b"\x00\xd0\x00"] {
            server.socket.send(Message::Binary(frame.to_vec())).await.expect("send");
        }
        server.socket.send(Message::Ping(b"p".to_vec())).await.expect("ping");
        server.socket.send(Message::Binary(b"\xd0\x00".to_vec())).await.expect("send");
        let mut read = vec![0; 8];
        reader.read_exact(&mut read).await.expect("read");
        assert_eq!(read, b"\x20\x02\x00\x00\xd0\x00\xd0\x00", "CONNACK and two PINGRESPs, across and within frames");
    }

    /// MQTT-6.0.0-1: MQTT is sent in binary frames; a text frame ends the connection.
    #[tokio::test]
    async fn a_text_frame_is_an_error_mqtt_6_0_0_1() {
        let (client, mut server) = pair(Some("mqtt")).await;
        let (mut reader, _writer) = client.expect("upgraded");
        server.socket.send(Message::Text("hello".into())).await.expect("send");
        let error = reader.read_u8().await.expect_err("a text frame is refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    /// MQTT-6.0.0-4: the server must select `mqtt`; one that selects another is refused.
    #[tokio::test]
    async fn a_server_choosing_another_subprotocol_is_refused_mqtt_6_0_0_4() {
        let (client, _server) = pair(Some("mqttv3.1")).await;
        let error = client.err().expect("refused");
        assert!(error.to_string().contains("mqttv3.1"), "{error}");
    }
}
