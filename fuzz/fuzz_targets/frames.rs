//! Arbitrary bytes through exactly what the daemon does with a connection's
//! input: length-delimited framing with the 1 MiB limit, then the daemon's
//! codec (`gpures_proto::framing::Codec`, bincode) into a tarpc client message
//! carrying a `Gpures` request. Nothing may panic; a frame either decodes or
//! is an error. (Its first run found tarpc's deadline overflow panic, which
//! the codec now turns into an error.)
#![no_main]

use bytes::BytesMut;
use gpures_proto::{GpuresRequest, GpuresResponse, MAX_FRAME_BYTES};
use libfuzzer_sys::fuzz_target;
use gpures_proto::framing::Codec;
use tarpc::tokio_serde::Deserializer;
use tarpc::tokio_util::codec::{Decoder, LengthDelimitedCodec};

type In = tarpc::ClientMessage<GpuresRequest>;
type Out = tarpc::Response<GpuresResponse>;

fuzz_target!(|data: &[u8]| {
    let mut codec = LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME_BYTES).new_codec();
    let mut buf = BytesMut::from(data);
    let mut format = Codec::<In, Out>::default();
    for _ in 0..64 {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                let _ = std::pin::Pin::new(&mut format).deserialize(&frame);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The same bytes as one whole frame, past the framing.
    let whole = BytesMut::from(data);
    let _ = std::pin::Pin::new(&mut format).deserialize(&whole);
});
