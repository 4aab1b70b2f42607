//! Every screen rendered by the real drawing code on ratatui's `TestBackend`
//! at 80×24 and 160×48, snapshotted with insta. The data holds a Korean name
//! and a name that carried escape sequences; the clock and ids are fixed, so
//! the snapshots are stable.

mod common;

use chrono::TimeDelta;
use common::{app, check_seq, now, press, type_text, tz};
use crossterm::event::{KeyCode, KeyEvent};
use gpures_proto::{Holder, Period, PolicyRefusal, PolicyRule, PolicyScope, UserRef};
use gpures_tui::tui::app::{App, Msg, Preview, Screen};
use gpures_tui::tui::render;
use uuid::Uuid;

fn both(name: &str, app: &mut App) {
    for (w, h) in [(80u16, 24u16), (160, 48), (200, 60)] {
        let screen = render(app, w, h);
        assert!(
            !screen.contains('\u{1b}'),
            "no escape character reaches the screen"
        );
        assert!(
            !screen.contains('\u{202e}'),
            "no bidi override reaches the screen"
        );
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen);
    }
}

#[test]
fn a_new_notification_is_a_banner_and_i_opens_the_inbox() {
    let mut a = app();
    let note = |id: i64, kind, title: &str, body: &str, read| gpures_proto::Notification {
        id,
        kind,
        reservation_id: None,
        title: title.into(),
        body: body.into(),
        created_at: now() - TimeDelta::minutes(id),
        read,
    };
    let mut next = common::snapshot();
    next.notifications = vec![
        note(
            3,
            gpures_proto::NotificationKind::AdminChanged,
            "김관리 cancelled your booking of gpu0",
            "노드 점검 (node maintenance) · booking 00000000",
            false,
        ),
        note(
            2,
            gpures_proto::NotificationKind::IdleWarning,
            "Your booking of gpu1 has been idle for 60 min\u{1b}[2J",
            "No process of yours on gpu1; it will be released at 15:40 UTC unless you run something on it or keep it: gpures keep 00000000",
            true,
        ),
    ];
    next.unread = 1;
    // The first load knew no notification: an older one, then the new one.
    let mut first = common::snapshot();
    first.notifications = vec![next.notifications[1].clone()];
    a.apply(Msg::Loaded(Box::new(first)));
    a.apply(Msg::Loaded(Box::new(next)));
    let screen = render(&mut a, 80, 24);
    assert!(
        screen.contains("● 김관리 cancelled your booking"),
        "{screen}"
    );
    assert!(screen.contains("1 new (i)"), "{screen}");
    let effects = press(&mut a, KeyCode::Char('i'));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, gpures_tui::tui::app::Effect::MarkRead(3))),
        "{effects:?}"
    );
    both("inbox", &mut a);
    a.apply(Msg::Read(3));
    assert!(!render(&mut a, 80, 24).contains("new (i)"));
}

#[test]
fn timeline() {
    let mut a = app();
    both("timeline", &mut a);
}

#[test]
fn timeline_booked_against_used() {
    let mut a = app();
    // Eve's finished six hours on gpu3: two used, then four idle.
    let mut s = common::snapshot();
    let eve = common::users()[3].clone();
    s.reservations
        .push(common::reservation(6, &eve, 4, -10, -4, "forgotten"));
    let at = |h: i64| common::reservation(0, &eve, 4, h, h, "").period.start;
    for (from, to, used) in [(-10, -8, true), (-8, -4, false)] {
        s.usage.push(gpures_proto::UsageSpan {
            resource_id: 4,
            period: Period {
                start: at(from),
                end: at(to),
            },
            used,
        });
    }
    a.apply(Msg::Loaded(Box::new(s)));
    for _ in 0..24 {
        press(&mut a, KeyCode::Left);
    }
    // 80 columns: half-hour cells.
    let screen = render(&mut a, 80, 24);
    let row = screen
        .lines()
        .find(|l| l.starts_with(" gpu3"))
        .unwrap_or_else(|| panic!("no gpu3:\n{screen}"));
    // 30-minute cells: the 8 idle cells are hatched; the name covers 3 of
    // the used ones, the last used one is solid.
    assert_eq!(row.matches('~').count(), 8, "{screen}");
    assert!(row.contains("Eve ~~~~~~~~"), "{screen}");
    both("timeline_usage", &mut a);
}

#[test]
fn timeline_week_zoom_with_marks_and_filter() {
    let mut a = app();
    a.key(KeyEvent::from(KeyCode::Char('-')));
    a.key(KeyEvent::from(KeyCode::Char('-')));
    // Applying a filter puts the cursor on the first row: filter first.
    press(&mut a, KeyCode::Char('/'));
    type_text(&mut a, "alex");
    press(&mut a, KeyCode::Enter);
    a.key(KeyEvent::from(KeyCode::Char(' ')));
    a.key(KeyEvent::from(KeyCode::Down));
    a.key(KeyEvent::from(KeyCode::Char(' ')));
    both("timeline_week", &mut a);
}

#[test]
fn booking_form_with_a_conflict() {
    let mut a = app();
    let seq = check_seq(&press(&mut a, KeyCode::Char('n')));
    let holder = Holder {
        reservation_id: Uuid::from_u128(2),
        resource_id: 1,
        resource_name: "gpu0".into(),
        user: UserRef {
            id: 2,
            email: "seoyeon.lee@lab.example".into(),
            display_name: "이서연".into(),
        },
        period: Period {
            start: now() + TimeDelta::hours(3),
            end: now() + TimeDelta::hours(8),
        },
    };
    a.apply(Msg::Checked {
        seq,
        holders: vec![holder],
        refusal: None,
        blocks: vec![],
    });
    assert!(matches!(
        a.booking_form().map(|f| &f.preview),
        Some(Preview::Taken(_))
    ));
    both("booking_form", &mut a);
}

#[test]
fn booking_form_tells_a_policy_refusal_before_enter() {
    let mut a = app();
    let seq = check_seq(&press(&mut a, KeyCode::Char('n')));
    let refusal = PolicyRefusal {
        rule: PolicyRule::GpuHoursWeek,
        scope: PolicyScope::Group("비전".into()),
        host: None,
        limit: 48 * 60,
        would_be: 52 * 60,
        window: Some(Period {
            start: now() - TimeDelta::days(2),
            end: now() + TimeDelta::days(5),
        }),
        free_from: None,
    };
    a.apply(Msg::Checked {
        seq,
        holders: vec![],
        refusal: Some(Box::new(refusal)),
        blocks: vec![],
    });
    assert!(matches!(
        a.booking_form().map(|f| &f.preview),
        Some(Preview::Refused(_))
    ));
    let screen = render(&mut a, 160, 48);
    assert!(
        screen.contains("✗ lab policy gpu-hours-week: 52 of 48 GPU-hours in 7 days"),
        "{screen}"
    );
    both("booking_form_policy", &mut a);
}

#[test]
fn edit_form_and_confirm() {
    let mut a = app();
    // The cursor starts on gpu0 now, inside 김민수's own reservation.
    let seq = check_seq(&press(&mut a, KeyCode::Char('e')));
    a.apply(Msg::Checked {
        seq,
        holders: vec![],
        refusal: None,
        blocks: vec![],
    });
    let form = a.booking_form().expect("the edit form is open");
    let values: Vec<&str> = form.fields().iter().map(|f| f.value.as_str()).collect();
    assert_eq!(
        values,
        [
            "gpu0",
            "2026-11-26 08:00",
            "2026-11-26 13:00",
            "LLM fine-tuning"
        ]
    );
    both("edit_form", &mut a);
    press(&mut a, KeyCode::Esc);
    a.key(KeyEvent::from(KeyCode::Char('x')));
    assert!(a.confirm().is_some(), "x asks first");
    both("confirm_cancel", &mut a);
}

#[test]
fn my_reservations() {
    let mut a = app();
    press(&mut a, KeyCode::Tab);
    assert_eq!(a.screen(), Screen::Mine);
    both("mine", &mut a);
}

#[test]
fn status() {
    let mut a = app();
    press(&mut a, KeyCode::Tab);
    press(&mut a, KeyCode::Tab);
    assert_eq!(a.screen(), Screen::Status);
    let screen = render(&mut a, 160, 48);
    assert!(
        screen.contains("!UNRESERVED labuser1 (pid 638)"),
        "flags read without colour:\n{screen}"
    );
    assert!(
        screen.contains("python3 (root, pid 634) · python3 (labuser1, pid 638)"),
        "processes by name, user and pid:\n{screen}"
    );
    assert!(
        screen.contains("Alex Morgan →") && screen.contains("2787/81559 MiB"),
        "holders unclipped, memory in the CLI's units:\n{screen}"
    );
    assert!(
        screen.contains("no GPU telemetry"),
        "gpu3 has none:\n{screen}"
    );
    both("status", &mut a);
}

#[test]
fn admin() {
    let mut a = app();
    press(&mut a, KeyCode::BackTab);
    assert_eq!(a.screen(), Screen::Admin);
    both("admin", &mut a);
}

/// A month of usage as the daemon reports it for November 2026 (Seoul).
fn november() -> gpures_proto::Report {
    use gpures_proto::{HeatRow, Report, ReportBy, ReportRow, Usage};
    let h = |x: i64| x * 60;
    let usage = |booked, used, idle, unreserved| Usage {
        booked: h(booked),
        used: h(used),
        idle: h(idle),
        unknown: h(booked - used - idle),
        unreserved: h(unreserved),
        ..Usage::default()
    };
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00+09:00")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let rows = vec![
        ReportRow {
            key: "김민수".into(),
            usage: usage(120, 90, 20, 0),
        },
        ReportRow {
            key: "Lee Jiwon".into(),
            usage: usage(80, 20, 50, 6),
        },
        ReportRow {
            key: "evil\u{1b}[2Jname".into(),
            usage: usage(10, 0, 10, 0),
        },
    ];
    let mut lab = Usage::default();
    for r in &rows {
        lab.add(&r.usage);
    }
    Report {
        window: Period {
            start,
            end: start + TimeDelta::days(30),
        },
        until: now(),
        by: ReportBy::User,
        rows,
        lab,
        everyone: true,
        heat: (0..4)
            .map(|g| HeatRow {
                resource: format!("gpu{g}"),
                days: (0..30)
                    .map(|d| (d < 26).then(|| u8::try_from((d * 7 + g * 13) % 101).unwrap_or(0)))
                    .collect(),
            })
            .collect(),
        trend: (0..30)
            .map(|d| (d < 26 && d % 6 != 5).then(|| u8::try_from(40 + d * 2).unwrap_or(0)))
            .collect(),
    }
}

#[test]
fn report_screen() {
    let mut a = app();
    let _ = press(&mut a, KeyCode::BackTab);
    let effects = press(&mut a, KeyCode::BackTab);
    assert_eq!(a.screen(), Screen::Report);
    let november = november();
    match effects.as_slice() {
        [gpures_tui::tui::app::Effect::LoadReport(w)] => assert_eq!(*w, november.window),
        other => panic!("opening the report loads its month: {other:?}"),
    }
    a.apply(Msg::ReportLoaded(Box::new(november)));
    let screen = render(&mut a, 80, 24);
    // Korean and Latin names take the same columns: the bars start together.
    let bar_column = |name: &str| {
        let line = screen
            .lines()
            .find(|l| l.starts_with('│') && l.contains(name))
            .unwrap_or_else(|| panic!("no {name}:\n{screen}"));
        let prefix: String = line.chars().take_while(|c| !"█▒░".contains(*c)).collect();
        unicode_width::UnicodeWidthStr::width(prefix.as_str())
    };
    assert_eq!(bar_column("김민수"), bar_column("Lee Jiwon"), "{screen}");
    assert!(screen.contains("82%"), "김민수: 90 of 110 seen:\n{screen}");
    both("report", &mut a);
    // ← asks for October; until it comes, the screen says it is loading.
    let effects = press(&mut a, KeyCode::Left);
    assert!(matches!(
        effects.as_slice(),
        [gpures_tui::tui::app::Effect::LoadReport(_)]
    ));
    assert!(render(&mut a, 80, 24).contains("loading…"));
}

#[test]
fn help_overlay() {
    let mut a = app();
    a.key(KeyEvent::from(KeyCode::Char('?')));
    assert!(a.help_open());
    both("help", &mut a);
    // Every key is listed: scrolling reaches the form, the prompt and the
    // questions; a key that does not scroll closes the help.
    let mut seen = render(&mut a, 80, 24);
    for _ in 0..10 {
        press(&mut a, KeyCode::PageDown);
        seen.push_str(&render(&mut a, 80, 24));
    }
    for listed in [
        "Booking form",
        "Filter prompt",
        "Questions",
        "C-r",
        "Bksp",
        "What the marks mean",
        "!UNRESERVED",
        "✓ synced",
    ] {
        assert!(seen.contains(listed), "{listed} is in the help");
    }
    press(&mut a, KeyCode::Char('z'));
    assert!(!a.help_open());
}

#[test]
fn login_and_register() {
    let mut a = App::new(tz(), now(), false, "").with_no_color(true);
    for c in "kim@lab.example".chars() {
        a.key(KeyEvent::from(KeyCode::Char(c)));
    }
    a.key(KeyEvent::from(KeyCode::Tab));
    for c in "secret".chars() {
        a.key(KeyEvent::from(KeyCode::Char(c)));
    }
    let screen = render(&mut a, 80, 24);
    assert!(screen.contains("••••••"), "the password is masked");
    assert!(!screen.contains("secret"));
    both("login", &mut a);
    let mut r = App::new(tz(), now(), false, "").with_no_color(true);
    r.key(KeyEvent::new(
        KeyCode::Char('r'),
        crossterm::event::KeyModifiers::CONTROL,
    ));
    assert!(r.login().register);
    both("register", &mut r);
    // A new Unix user on a host with peer sign-in: the first screen is the
    // registration, its name from the Unix account, and no password.
    let mut first = App::new(tz(), now(), false, "")
        .with_no_color(true)
        .with_peer_login(true)
        .first_run("김민수", false);
    assert_eq!(first.screen(), Screen::Login);
    assert!(first.login().register);
    let screen = render(&mut first, 80, 24);
    assert!(screen.contains("No password"), "{screen}");
    assert!(!screen.contains("Password "), "{screen}");
    both("first_run", &mut first);
}
