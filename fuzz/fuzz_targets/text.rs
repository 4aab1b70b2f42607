//! The text rule and the nvidia-smi parsers on arbitrary input: no panic, and
//! sanitized text never carries a control character or a bidi override.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let clean = gpures_proto::text::sanitize(&s);
    assert!(!gpures_proto::text::needs_sanitizing(&clean), "{clean:?}");
    let _ = gpures_daemon::gpu::smi::parse_gpus(&s);
    let _ = gpures_daemon::gpu::smi::parse_apps(&s);
});
