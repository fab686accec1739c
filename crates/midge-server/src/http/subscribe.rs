//! `GET /api/v1/subscribe`: a session of the core whose messages are a stream of server-sent
//! events (`text/event-stream`; `events` writes them).
//!
//! The session subscribes to each `filter` of the query before the response starts, so a
//! refusal (the ACL, a limit) is an error status rather than a stream. Then a task of its own
//! drains the session through an [`Egress`] into the stream, at most
//! [`HTTP_SSE_CHUNK_BYTES`] at a time and [`HTTP_SSE_CHUNKS`] ahead of the socket: a reader
//! slower than its messages leaves them in the session's queue, where its bound, the pacing of
//! its publishers and the slow-consumer policy apply as to an MQTT subscriber. A message is
//! acknowledged to the core (its QoS 1 or 2 delivery completed) once its event is handed to the
//! connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body::Frame;
use midge_broker::ports::egress::Egress;
use midge_broker::{CloseKind, Outgoing, Queued, Signal};
use midge_codec::{
    Packet, PacketId, Properties, PubResponse, QoS, ReasonCode, RetainHandling, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use super::caller::Credentials;
use super::client::{self, Connected, Session};
use super::error::ApiError;
use super::events::{self, Resume, SharedResume};
use super::publish::Encoding;
use super::Api;
use crate::limits::{HTTP_SSE_CHUNKS, HTTP_SSE_CHUNK_BYTES, HTTP_SSE_KEEP_ALIVE};

/// What a subscribe request asks for.
#[derive(Debug)]
struct Request {
    filters: Vec<TopicFilter>,
    qos: QoS,
    client_id: Option<String>,
    expiry: u32,
    encoding: Option<Encoding>,
    last_event_id: Option<u64>,
}

/// Subscribes and answers with the event stream.
pub(super) async fn subscribe(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let credentials = Credentials::from_headers(&headers)?;
    let request = parse(query.as_deref(), &headers)?;
    let (answer, answered) = oneshot::channel();
    tokio::spawn(serve_stream(api, credentials, request, answer));
    let receiver = answered.await.map_err(|_| ApiError::unavailable("the event stream did not start"))??;
    let mut response = Body::new(EventBody { receiver }).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx and the like not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// An event stream's task: connects its client and subscribes, tells the request how that went
/// (`answer`: the stream's receiving end, or the error), then drains the session into the
/// stream until it ends. In a task of its own, so that a request that goes away meanwhile
/// (hyper then drops its future) leaves no client connected: the stream then finds its
/// receiving end gone and ends at once.
async fn serve_stream(
    api: Arc<Api>,
    credentials: Credentials,
    request: Request,
    answer: oneshot::Sender<Result<mpsc::Receiver<Bytes>, ApiError>>,
) {
    match start(api, credentials, request).await {
        Ok((stream, receiver)) => {
            let _ = answer.send(Ok(receiver));
            stream.run().await;
        }
        Err(error) => {
            let _ = answer.send(Err(error));
        }
    }
}

/// Connects the request's client, subscribes it, and readies its stream with the first chunk:
/// the `retry` field, the `: subscribed` comment, and the kept events after the reader's
/// `Last-Event-ID`.
async fn start(
    api: Arc<Api>,
    credentials: Credentials,
    request: Request,
) -> Result<(Stream, mpsc::Receiver<Bytes>), ApiError> {
    // A reader resumes its session only with a name for it and where it was; without either
    // it starts a new one.
    let clean_start = request.client_id.is_none() || request.last_event_id.is_none();
    let session = Session { client_id: request.client_id.clone(), clean_start, expiry: request.expiry, keep_alive: 0 };
    let mut client = client::connect(&api, credentials, session).await?;
    if let Err(error) = subscribe_filters(&api, &mut client, &request).await {
        client.close();
        return Err(error);
    }
    let client_id = Arc::clone(client.connection.client_id());
    let resume = if request.expiry > 0 {
        api.http.resume.session(&client_id, client.session_present, request.last_event_id)
    } else {
        Arc::new(std::sync::Mutex::new(Resume::after(request.last_event_id)))
    };
    let (sender, receiver) = mpsc::channel(HTTP_SSE_CHUNKS);
    let mut first = BytesMut::new();
    // `retry`: how long a reader waits before it reconnects; the comment tells it (and a
    // person with curl) that the subscriptions are in place.
    first.extend_from_slice(b"retry: 1000\n: subscribed\n\n");
    if let Some(last) = request.last_event_id.filter(|_| client.session_present) {
        for event in events::lock(&resume).replay(last) {
            first.extend_from_slice(event);
        }
    }
    // The channel is new: the first chunk has room.
    let _ = sender.try_send(first.freeze());
    info!(peer = %api.peer, %client_id, filters = request.filters.len(), resumed = client.session_present,
        last_event_id = ?request.last_event_id, "http: event stream started");
    Ok((Stream { api, client, resume, sender, encoding: request.encoding }, receiver))
}

/// Subscribes `client` to the request's filters; a filter refused is the request's error.
async fn subscribe_filters(api: &Api, client: &mut Connected, request: &Request) -> Result<(), ApiError> {
    // A resumed session keeps its subscriptions; retained messages go again only to new ones.
    let retain_handling =
        if client.session_present { RetainHandling::SendIfNew } else { RetainHandling::SendAtSubscribe };
    let subscriptions = request
        .filters
        .iter()
        .map(|filter| Subscription {
            filter: filter.clone(),
            options: SubscriptionOptions { qos: request.qos, retain_handling, ..SubscriptionOptions::default() },
        })
        .collect();
    let packet = Subscribe {
        packet_id: PacketId::new(1).expect("1 is not 0"),
        subscriptions,
        properties: Properties::default(),
    };
    for answer in client.core(api, Packet::Subscribe(packet)).await? {
        let Packet::SubAck(ack) = answer else { continue };
        for (filter, reason) in request.filters.iter().zip(&ack.reasons) {
            if reason.is_error() {
                return Err(client::refused(*reason, &format_args!("subscribing to {}", filter.as_str())));
            }
        }
    }
    Ok(())
}

/// The request's query (`filter`, repeated; `qos`; `client_id`; `session_expiry`; `encoding`;
/// `last_event_id`) and its `Last-Event-ID` header, which wins over the query's.
fn parse(query: Option<&str>, headers: &HeaderMap) -> Result<Request, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|error| ApiError::bad_request(format!("query: {error}")))?;
    let mut request = Request {
        filters: Vec::new(),
        qos: QoS::AtLeastOnce,
        client_id: None,
        expiry: 0,
        encoding: None,
        last_event_id: None,
    };
    let number = |key: &str, value: &str| {
        value.parse::<u64>().map_err(|_| ApiError::bad_request(format!("{key} = {value:?}: not a number")))
    };
    for (key, value) in &pairs {
        match key.as_str() {
            "filter" => request.filters.push(
                TopicFilter::new(value).map_err(|error| ApiError::bad_request(format!("filter {value:?}: {error}")))?,
            ),
            "qos" => {
                request.qos = u8::try_from(number(key, value)?)
                    .ok()
                    .and_then(QoS::from_u8)
                    .ok_or_else(|| ApiError::bad_request(format!("qos {value}: use 0, 1 or 2")))?
            }
            "client_id" => request.client_id = Some(value.clone()),
            "session_expiry" => {
                request.expiry = u32::try_from(number(key, value)?)
                    .map_err(|_| ApiError::bad_request("session_expiry: at most 4294967295 seconds"))?
            }
            "encoding" => {
                request.encoding = Some(match value.as_str() {
                    "text" => Encoding::Text,
                    "base64" => Encoding::Base64,
                    _ => return Err(ApiError::bad_request(format!("encoding {value:?}: use text or base64"))),
                })
            }
            "last_event_id" => request.last_event_id = Some(number(key, value)?),
            _ => return Err(ApiError::bad_request(format!("unknown query parameter {key:?}"))),
        }
    }
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().map_err(|_| ApiError::bad_request("Last-Event-ID is not text"))?;
        request.last_event_id = Some(number("Last-Event-ID", text.trim())?);
    }
    if request.filters.is_empty() {
        return Err(ApiError::bad_request("no filter: give at least one filter= in the query"));
    }
    Ok(request)
}

/// The response body: the chunks of events the stream's task sends. When the reader goes,
/// hyper drops it, and the task sees its channel closed.
struct EventBody {
    receiver: mpsc::Receiver<Bytes>,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.receiver.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// An event stream's task: its session of the core and its end of the body's channel.
struct Stream {
    api: Arc<Api>,
    client: Connected,
    resume: SharedResume,
    sender: mpsc::Sender<Bytes>,
    encoding: Option<Encoding>,
}

impl Stream {
    /// Drains the session into the stream until the reader goes or the session is told to end
    /// (taken over, the server shutting down, the slow-consumer policy).
    async fn run(mut self) {
        let kick = Arc::clone(self.client.connection.kick());
        // In the listener's roster while it streams: a reload that removes the listener ends it.
        let _member = self.api.context.roster.join(&kick);
        let mut chunk = BytesMut::new();
        let mut delivered: Vec<Delivered> = Vec::new();
        let mut written: Vec<(u64, Bytes)> = Vec::new();
        {
            // A resumed session's messages in flight when its last stream ended go first.
            let mut sink = EventSink::new(&mut chunk, &mut delivered, &mut written, &self.resume, self.encoding);
            self.client.connection.resume_to(Instant::now(), &mut sink);
        }
        let period = match self.client.connection.keep_alive() {
            0 => HTTP_SSE_KEEP_ALIVE,
            seconds => HTTP_SSE_KEEP_ALIVE.min(std::time::Duration::from_secs(u64::from(seconds)) / 2),
        };
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut more = true;
        let ending = loop {
            if let Err(error) = self.read_back().await {
                break (CloseKind::Normal, error);
            }
            if more && chunk.len() < HTTP_SSE_CHUNK_BYTES {
                let mut sink = EventSink::new(&mut chunk, &mut delivered, &mut written, &self.resume, self.encoding);
                more = self.client.connection.drain_to(Instant::now(), &mut sink);
            }
            let sent = tokio::select! {
                permit = self.sender.reserve(), if !chunk.is_empty() => match permit {
                    Ok(permit) => {
                        permit.send(chunk.split().freeze());
                        true
                    }
                    Err(_) => break (CloseKind::Normal, "reader gone".to_owned()),
                },
                () = self.sender.closed(), if chunk.is_empty() => break (CloseKind::Normal, "reader gone".to_owned()),
                signal = std::future::poll_fn(|cx| kick.poll_signal(cx)) => match signal {
                    Signal::Work => {
                        more = true;
                        false
                    }
                    Signal::Kicked(reason) => break (close_kind(reason), format!("kicked: {reason}")),
                },
                _ = keep_alive.tick() => {
                    self.client.connection.heard(Instant::now());
                    if chunk.is_empty() {
                        // A full channel is a stream that is not idle: no comment is needed.
                        let _ = self.sender.try_send(events::comment("keep-alive"));
                    }
                    false
                }
            };
            if sent {
                {
                    let mut resume = events::lock(&self.resume);
                    for (id, event) in written.drain(..) {
                        resume.keep(id, event);
                    }
                }
                for delivered in std::mem::take(&mut delivered) {
                    self.complete(delivered).await;
                    more = true;
                }
            }
        };
        let (how, reason) = ending;
        let client_id = Arc::clone(self.client.connection.client_id());
        info!(peer = %self.api.peer, %client_id, %reason, "http: event stream ended");
        self.client.connection.close(how, Instant::now());
    }

    /// Completes a delivery whose event has been handed to the connection.
    async fn complete(&mut self, delivered: Delivered) {
        match delivered {
            Delivered::Message(packet_id) => self.client.connection.acknowledge(packet_id),
            Delivered::Release(packet_id) => {
                let packet = Packet::PubComp(PubResponse::success(packet_id));
                if let Err(error) = self.client.core(&self.api, packet).await {
                    debug!(?error, "http: a QoS 2 delivery could not be completed");
                }
            }
        }
    }

    /// Brings the next batch of a spilled session's queue back from the store when the session
    /// asks for one (decision 0006), as an MQTT client's driver does.
    async fn read_back(&mut self) -> Result<(), String> {
        let Some(request) = self.client.connection.read_back() else { return Ok(()) };
        if let Some(writer) = &self.api.context.store {
            writer.durable(midge_store::Ticket(request.ticket().0)).await.map_err(|error| error.to_string())?;
        }
        let batch = tokio::task::spawn_blocking(move || request.read()).await.map_err(|error| error.to_string())?;
        self.client.connection.append_read_back(batch).map_err(|error| error.to_string())?;
        Ok(())
    }
}

/// How a session told to end is closed: its will (it has none) and its session as the reason
/// says.
fn close_kind(reason: ReasonCode) -> CloseKind {
    match reason {
        ReasonCode::SESSION_TAKEN_OVER => CloseKind::TakenOver,
        ReasonCode::SERVER_SHUTTING_DOWN => CloseKind::ServerShutdown,
        _ => CloseKind::Normal,
    }
}

/// A QoS 1 or 2 delivery in a chunk, completed once the chunk is sent.
#[derive(Debug, Clone, Copy)]
enum Delivered {
    /// A message: acknowledged as its PUBACK, or PUBREC and PUBCOMP, would.
    Message(PacketId),
    /// A QoS 2 delivery an earlier connection had received (its PUBREL to resend): completed
    /// as its PUBCOMP would.
    Release(PacketId),
}

/// The [`Egress`] a stream's session drains into: each message becomes an event in `chunk`.
struct EventSink<'a> {
    chunk: &'a mut BytesMut,
    /// The QoS 1 and 2 deliveries in `chunk`.
    delivered: &'a mut Vec<Delivered>,
    /// The events in `chunk`, kept for `Last-Event-ID` once it is sent (not before: a message
    /// whose event never left is resent by the session, under a new id).
    written: &'a mut Vec<(u64, Bytes)>,
    resume: &'a SharedResume,
    encoding: Option<Encoding>,
}

impl<'a> EventSink<'a> {
    fn new(
        chunk: &'a mut BytesMut,
        delivered: &'a mut Vec<Delivered>,
        written: &'a mut Vec<(u64, Bytes)>,
        resume: &'a SharedResume,
        encoding: Option<Encoding>,
    ) -> Self {
        Self { chunk, delivered, written, resume, encoding }
    }
}

impl Egress for EventSink<'_> {
    fn accepts(&mut self, _item: &Queued, _now: Instant) -> bool {
        true
    }

    fn send(&mut self, outgoing: Outgoing, _now: Instant) -> bool {
        match outgoing {
            Outgoing::Publish { item, packet_id, .. } => {
                let id = events::lock(self.resume).next_id();
                let start = self.chunk.len();
                events::write_event(self.chunk, id, &item, self.encoding);
                self.written.push((id, Bytes::copy_from_slice(&self.chunk[start..])));
                self.delivered.extend(packet_id.map(Delivered::Message));
                true
            }
            Outgoing::PubRel(packet_id) => {
                self.delivered.push(Delivered::Release(packet_id));
                false
            }
        }
    }

    fn has_room(&self) -> bool {
        self.chunk.len() < HTTP_SSE_CHUNK_BYTES
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn the_query() {
        let mut headers = HeaderMap::new();
        let request = parse(Some("filter=a%2F%23&filter=b&qos=0&client_id=x&session_expiry=60"), &headers).unwrap();
        assert_eq!(request.filters.len(), 2);
        assert_eq!((request.qos, request.client_id.as_deref(), request.expiry), (QoS::AtMostOnce, Some("x"), 60));
        headers.insert("last-event-id", HeaderValue::from_static("7"));
        assert_eq!(parse(Some("filter=a&last_event_id=3"), &headers).unwrap().last_event_id, Some(7));
        for bad in
            [None, Some("filter=a/#/b"), Some("filter=a&qos=3"), Some("filter=a&x=1"), Some("filter=a&encoding=hex")]
        {
            assert_eq!(parse(bad, &HeaderMap::new()).unwrap_err().status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
