//! The frame codec on hostile input: the input the `frames` fuzz target found
//! (a request deadline that overflows `Instant`, which panics inside tarpc)
//! decodes to an error instead of a panic.

use bytes::BytesMut;
use gpures_proto::framing::Codec;
use gpures_proto::{GpuresRequest, GpuresResponse, MAX_FRAME_BYTES};
use tarpc::tokio_serde::Deserializer;
use tarpc::tokio_util::codec::{Decoder, LengthDelimitedCodec};

type In = tarpc::ClientMessage<GpuresRequest>;
type Out = tarpc::Response<GpuresResponse>;

#[test]
fn the_fuzz_crash_is_an_error_not_a_panic() {
    let data = include_bytes!("data/fuzz-crash-deadline-overflow.bin");
    let mut format = Codec::<In, Out>::default();
    let mut codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec();
    let mut buf = BytesMut::from(&data[..]);
    let mut frames = 0;
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        frames += 1;
        let _ = std::pin::Pin::new(&mut format).deserialize(&frame);
    }
    let whole = BytesMut::from(&data[..]);
    let result = std::pin::Pin::new(&mut format).deserialize(&whole);
    assert!(
        frames > 0 || result.is_err(),
        "the input was decoded without a panic"
    );
}

#[test]
fn inside_a_frame_the_same_payload_closes_the_connection_instead_of_panicking() {
    let payload = include_bytes!("data/fuzz-crash-deadline-overflow.bin");
    // Plain bincode panics on it (tarpc adds the peer's deadline to now).
    let raw = std::panic::catch_unwind(|| {
        let mut b = tarpc::tokio_serde::formats::Bincode::<In, Out>::default();
        let _ = std::pin::Pin::new(&mut b).deserialize(&BytesMut::from(&payload[..]));
    });
    assert!(
        raw.is_err(),
        "the fuzz input still reaches tarpc's overflow"
    );
    // Framed the way a client would send it, the daemon's codec says no.
    let mut framed = (u32::try_from(payload.len()).expect("small"))
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(payload);
    let mut codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec();
    let frame = codec
        .decode(&mut BytesMut::from(&framed[..]))
        .expect("frames")
        .expect("one frame");
    let mut format = Codec::<In, Out>::default();
    let result = std::pin::Pin::new(&mut format).deserialize(&frame);
    assert_eq!(
        result.expect_err("refused").kind(),
        std::io::ErrorKind::InvalidData
    );
}
