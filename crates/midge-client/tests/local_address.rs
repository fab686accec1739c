//! `ConnectOptions::local_address`: the socket is bound to the given source address, which a
//! load generator uses to spread connections over 127.0.0.x.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::BytesMut;
use midge_client::codec::{decode_packet, encode_packet, ConnAck, Packet, ProtocolVersion};
use midge_client::{Client, ConnectOptions, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn connection_comes_from_the_local_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        loop {
            if let Some(packet) = decode_packet(&mut buf, ProtocolVersion::V311, usize::MAX).unwrap() {
                assert!(matches!(packet, Packet::Connect(_)));
                break;
            }
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0);
        }
        let mut out = BytesMut::new();
        encode_packet(&Packet::ConnAck(ConnAck::default()), ProtocolVersion::V311, &mut out).unwrap();
        stream.write_all(&out).await.unwrap();
        peer
    });
    let mut options = ConnectOptions::new("127.0.0.1", port);
    let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
    options.local_address = Some(local);
    let _client = Client::connect(options).await.unwrap();
    assert_eq!(broker.await.unwrap().ip(), local);
}

#[tokio::test]
async fn local_address_of_another_family_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut options = ConnectOptions::new("127.0.0.1", listener.local_addr().unwrap().port());
    options.local_address = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let error = Client::connect(options).await.err().expect("no IPv6 address for 127.0.0.1");
    assert!(matches!(error, Error::Connect { .. }), "{error}");
}
