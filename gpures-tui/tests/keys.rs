//! The real app state driven by keys against a real daemon: log in through
//! the login screen, book by keys (the reservation exists in the daemon),
//! cancel by keys (it is gone), and see another user's booking arrive.

use chrono::{DurationRound, Utc};
use crossterm::event::KeyCode;
use gpures_proto::ReservationFilter;
use gpures_testkit::{PASSWORD, TestDaemon};
use gpures_tui::tui::app::{App, Msg, Preview, Screen};
use gpures_tui::tui::{Driver, Session};
use tarpc::context;

async fn setup() -> (TestDaemon, Driver) {
    let daemon = TestDaemon::builder()
        .with_gpus(3)
        .start()
        .await
        .expect("daemon");
    daemon.user("kim@lab.kr", "김민수").await.expect("user");
    let client = gpures_tui::client::Client::connect(&daemon.socket)
        .await
        .expect("connect");
    let tz = "Asia/Seoul".parse().expect("zone");
    let mut app = App::new(tz, Utc::now(), false, "").with_host(&client.hello().host);
    app.apply(Msg::Resized { cols: 68, rows: 40 });
    let driver = Driver {
        app,
        session: Session::new(client, None, None),
    };
    (daemon, driver)
}

/// 김민수's active reservations, as the daemon stores them.
async fn kims(daemon: &TestDaemon) -> Vec<gpures_proto::Reservation> {
    daemon
        .reservations(&ReservationFilter {
            user_email: Some("kim@lab.kr".into()),
            ..Default::default()
        })
        .await
        .expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_book_and_cancel_by_keys() {
    let (daemon, mut d) = setup().await;
    assert_eq!(d.app.screen(), Screen::Login);
    d.type_text("kim@lab.kr").await;
    d.press_code(KeyCode::Enter).await;
    d.type_text("wrong password").await;
    d.press_code(KeyCode::Enter).await;
    assert_eq!(
        d.app.screen(),
        Screen::Login,
        "a wrong password keeps the login screen"
    );
    assert!(d.render(80, 24).contains("wrong email or password"));
    assert!(
        d.app.login().fields()[1].value.is_empty(),
        "the password is cleared, the email kept"
    );
    d.type_text(PASSWORD).await;
    d.press_code(KeyCode::Enter).await;
    assert_eq!(d.app.screen(), Screen::Timeline);
    assert_eq!(d.app.data().resources.len(), 3);

    // Mark gpu1 and gpu2, move two hours ahead, and book for 90 minutes.
    d.press_char('j').await;
    d.press_char(' ').await;
    d.press_char('j').await;
    d.press_char(' ').await;
    for _ in 0..4 {
        d.press_char('l').await;
    }
    d.press_code(KeyCode::Enter).await;
    let form = d.app.booking_form().expect("the booking form is open");
    assert_eq!(form.fields()[0].value, "gpu1 gpu2");
    assert!(
        matches!(form.preview, Preview::Free),
        "the live preview says free: {:?}",
        form.preview
    );
    d.press_code(KeyCode::Tab).await; // to End
    for _ in 0..2 {
        d.press_code(KeyCode::Backspace).await;
    }
    d.type_text("90m").await;
    d.press_code(KeyCode::Tab).await; // to Note
    d.type_text("키보드로 예약").await;
    d.press_code(KeyCode::Enter).await;
    assert!(
        d.app.booking_form().is_none(),
        "the form closes after booking: {:?}",
        d.app.message()
    );
    let mine = kims(&daemon).await;
    assert_eq!(mine.len(), 2, "two GPUs booked together");
    // Shown from the booking's reply: the Driver follows no live changes
    // and the TUI does not reload after its own change.
    assert_eq!(d.app.data().mine.len(), 2);
    assert!(mine.iter().all(|r| r.note == "키보드로 예약"));
    assert_eq!(
        (mine[0].period.end - mine[0].period.start).num_minutes(),
        90
    );
    let screen = d.render(80, 24);
    assert!(
        screen.contains("*김"),
        "the new bars are drawn as mine:\n{screen}"
    );

    // The same slot again shows who holds it before Enter is pressed.
    d.press_char('n').await;
    let form = d.app.booking_form().expect("form");
    assert!(
        matches!(&form.preview, Preview::Taken(h) if h[0].user.display_name == "김민수"),
        "{:?}",
        form.preview
    );
    d.press_code(KeyCode::Esc).await;

    // Cancel the reservation under the cursor: x asks, n keeps it, y cancels.
    d.press_char('x').await;
    assert!(d.app.confirm().is_some());
    d.press_char('n').await;
    d.press_char('x').await;
    d.press_char('y').await;
    let active = kims(&daemon).await;
    assert_eq!(
        active.len(),
        1,
        "one of the two is cancelled: {:?}",
        d.app.message()
    );

    // Another user's booking arrives through the live path.
    let (other, login) = daemon.user("lee@lab.kr", "이서연").await.expect("user");
    let gpu0 = d.app.data().resources[0].id;
    let start = d.app.timeline().cell_start(d.app.timeline().cursor_col + 2);
    let start =
        chrono::DurationRound::duration_trunc(start, chrono::TimeDelta::minutes(1)).expect("trunc");
    let since = gpures_testkit::change_version(&other, &login.token).await;
    other
        .create_booking(
            context::current(),
            login.token.clone(),
            gpures_proto::BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![gpu0],
                period: gpures_proto::Period {
                    start,
                    end: start + chrono::TimeDelta::hours(3),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    // What the TUI's watch gets: the booking itself, nothing to refetch.
    let changes = loop {
        let c = other
            .wait_for_changes(context::current(), login.token.clone(), since)
            .await
            .expect("rpc")
            .expect("changes");
        if c.delta.as_ref().is_some_and(|d| !d.reservations.is_empty()) {
            break c;
        }
    };
    let effects = d.app.apply(Msg::Changed(changes.delta.map(Box::new)));
    assert!(
        effects.is_empty(),
        "a delta asks for no reload: {effects:?}"
    );
    assert!(
        d.app
            .data()
            .reservations
            .iter()
            .any(|r| r.user.display_name == "이서연")
    );
    assert!(d.render(160, 48).contains("이서연"));
    daemon.stop().await.expect("stop");
}

#[tokio::test]
async fn members_cannot_touch_others_reservations_from_the_tui() {
    let (daemon, mut d) = setup().await;
    d.type_text("kim@lab.kr").await;
    d.press_code(KeyCode::Enter).await;
    d.type_text(PASSWORD).await;
    d.press_code(KeyCode::Enter).await;
    let (other, login) = daemon.user("lee@lab.kr", "이서연").await.expect("user");
    let gpu0 = d.app.data().resources[0].id;
    let start = d.app.timeline().cell_start(d.app.timeline().cursor_col + 1);
    let start =
        chrono::DurationRound::duration_trunc(start, chrono::TimeDelta::minutes(1)).expect("trunc");
    other
        .create_booking(
            context::current(),
            login.token,
            gpures_proto::BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![gpu0],
                period: gpures_proto::Period {
                    start,
                    end: start + chrono::TimeDelta::hours(2),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    d.press_code(KeyCode::F(5)).await;
    d.press_char('l').await;
    assert!(d.app.reservation_at_cursor().is_some());
    d.press_char('x').await;
    assert!(d.app.confirm().is_none());
    assert!(d.render(80, 24).contains("not your reservation"));
    d.press_char('e').await;
    assert!(d.app.booking_form().is_none());
    daemon.stop().await.expect("stop");
}

/// A daemon restart (every package upgrade) under an open TUI: the next
/// call connects again, the session still holds, and booking by keys works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_reconnects_after_a_daemon_restart() {
    let (mut daemon, mut d) = setup().await;
    d.type_text("kim@lab.kr").await;
    d.press_code(KeyCode::Enter).await;
    d.type_text(PASSWORD).await;
    d.press_code(KeyCode::Enter).await;
    assert_eq!(d.app.screen(), Screen::Timeline);

    let before = daemon.client().await.expect("client");
    daemon.restart().await.expect("restart");
    assert!(
        before
            .hello(context::current(), gpures_proto::PROTOCOL_VERSION)
            .await
            .is_err(),
        "connections made before the restart are gone"
    );

    // F5 reloads through a new connection; no "restart gpures" anywhere.
    d.press_code(KeyCode::F(5)).await;
    let screen = d.render(80, 24);
    assert!(!screen.contains("lost the connection"), "{screen}");
    assert_eq!(d.app.data().resources.len(), 3);
    // Book by keys: the form's check is answered, the booking is made.
    for _ in 0..4 {
        d.press_char('l').await;
    }
    d.press_code(KeyCode::Enter).await;
    let form = d.app.booking_form().expect("form");
    assert!(
        matches!(form.preview, Preview::Free),
        "the check is answered after the restart: {:?}",
        form.preview
    );
    d.press_code(KeyCode::Enter).await;
    assert!(d.app.booking_form().is_none(), "{:?}", d.app.message());
    let mine = kims(&daemon).await;
    assert_eq!(mine.len(), 1);

    // The live path reports the restart and the return.
    daemon.restart().await.expect("restart");
    let effects = d.app.apply(Msg::Reconnected);
    d.settle(effects).await;
    assert!(
        d.render(80, 24).contains("reconnected"),
        "the footer says so"
    );
    daemon.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_n_gpus_from_the_booking_form() {
    let (daemon, mut d) = setup().await;
    d.type_text("kim@lab.kr").await;
    d.press_code(KeyCode::Enter).await;
    d.type_text(PASSWORD).await;
    d.press_code(KeyCode::Enter).await;
    assert_eq!(d.app.screen(), Screen::Timeline);
    // gpu0 is taken for the next hours by someone else.
    let (other, login) = daemon.user("lee@lab.kr", "이서연").await.expect("user");
    let start = Utc::now()
        .duration_trunc(chrono::TimeDelta::minutes(1))
        .expect("trunc");
    other
        .create_booking(
            context::current(),
            login.token,
            gpures_proto::BookingRequest {
                request_id: uuid::Uuid::new_v4(),
                resources: vec![daemon.gpus[0]],
                period: gpures_proto::Period {
                    start,
                    end: start + chrono::TimeDelta::hours(3),
                },
                note: String::new(),
            },
        )
        .await
        .expect("rpc")
        .expect("book");
    d.press_code(KeyCode::Enter).await;
    d.press_code(KeyCode::BackTab).await; // to GPUs
    let typed = d.app.booking_form().expect("the form").fields()[0]
        .value
        .chars()
        .count();
    for _ in 0..typed {
        d.press_code(KeyCode::Backspace).await;
    }
    d.type_text("any 2").await;
    let form = d.app.booking_form().expect("the form");
    let Preview::Found { gpus, .. } = &form.preview else {
        panic!("the preview names the GPUs it found: {:?}", form.preview);
    };
    assert_eq!(gpus, &vec!["gpu1".to_owned(), "gpu2".to_owned()]);
    assert!(
        d.render(100, 30).contains("✓ gpu1, gpu2"),
        "{}",
        d.render(100, 30)
    );
    d.press_code(KeyCode::Enter).await;
    assert!(d.app.booking_form().is_none(), "{:?}", d.app.message());
    let mine = kims(&daemon).await;
    let names: Vec<&str> = mine.iter().map(|r| r.resource_name.as_str()).collect();
    assert_eq!(names, vec!["gpu1", "gpu2"]);
    daemon.stop().await.expect("stop");
}
