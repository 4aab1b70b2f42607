//! Hostile and broken peers: 1,000 malformed frames, oversized length
//! prefixes and peers that stop mid-frame, while a well-behaved client keeps
//! booking: the daemon stays up and that client sees no error.

use std::time::Duration;

use gpures_testkit::TestDaemon;
use tarpc::context;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_truncated_frames_disturb_no_one() {
    let daemon = TestDaemon::builder()
        .with_gpus(1)
        .start()
        .await
        .expect("daemon");
    let (good, login) = daemon.user("steady@lab.kr", "Steady").await.expect("user");
    let gpu = daemon.gpus[0];
    // A well-behaved client keeps booking through the whole attack.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let booker = {
        let (stop, client, token) = (stop.clone(), good.clone(), login.token.clone());
        tokio::spawn(async move {
            let base = chrono::DurationRound::duration_trunc(
                chrono::Utc::now(),
                chrono::TimeDelta::hours(1),
            )
            .expect("trunc");
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let start = base + chrono::TimeDelta::hours(2 + n);
                client
                    .create_booking(
                        context::current(),
                        token.clone(),
                        gpures_proto::BookingRequest {
                            request_id: uuid::Uuid::new_v4(),
                            resources: vec![gpu],
                            period: gpures_proto::Period {
                                start,
                                end: start + chrono::TimeDelta::hours(1),
                            },
                            note: String::new(),
                        },
                    )
                    .await
                    .expect("the booking client's connection survives")
                    .expect("the booking client sees no error");
                n += 1;
            }
            n
        })
    };

    // A peer that sends half a frame and then waits, holding its connection.
    let mut stalled = UnixStream::connect(&daemon.socket).await.expect("connect");
    stalled
        .write_all(&[0, 0, 0, 100, 1, 2, 3])
        .await
        .expect("write");

    let mut rng_state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    for i in 0..1000u32 {
        let mut s = UnixStream::connect(&daemon.socket).await.expect("connect");
        let frame: Vec<u8> = match i % 4 {
            // Random bytes behind a valid length prefix.
            0 => {
                let len = (next() % 512) as usize;
                let mut f = (len as u32).to_be_bytes().to_vec();
                f.extend((0..len).map(|_| next() as u8));
                f
            }
            // A length prefix far beyond the 1 MiB limit.
            1 => vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
            // Pure garbage without framing.
            2 => (0..64).map(|_| next() as u8).collect(),
            // A truncated frame, then hang up.
            _ => vec![0, 0, 1, 0, 9, 9],
        };
        let _ = s.write_all(&frame).await;
        drop(s);
        if i % 250 == 0 {
            let who = good
                .whoami(context::current(), login.token.clone())
                .await
                .expect("rpc")
                .expect("the well-behaved client is still served");
            assert_eq!(who.email, "steady@lab.kr");
        }
    }
    // A brand-new client is served too, while the stalled peer still waits.
    let fresh = daemon.client().await.expect("a new client connects");
    let who = fresh
        .whoami(context::current(), login.token.clone())
        .await
        .expect("rpc")
        .expect("served");
    assert_eq!(who.email, "steady@lab.kr");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let booked = booker.await.expect("the booking client never failed");
    assert!(booked > 0, "it booked during the attack");
    drop(stalled);
    tokio::time::sleep(Duration::from_millis(50)).await;
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn one_unix_user_cannot_take_every_connection() {
    let daemon = TestDaemon::start_with(|c| c.limits.max_connections_per_user = 4)
        .await
        .expect("daemon");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(daemon.client().await.expect("within the limit"));
    }
    let refused = daemon.client().await;
    assert!(
        refused.is_err(),
        "the fifth connection of one user is closed"
    );
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    daemon.client().await.expect("a place became free");
    daemon.stop().await.expect("stop");
}
