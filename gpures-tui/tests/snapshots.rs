//! Every screen rendered by the real drawing code on ratatui's `TestBackend`
//! at 80×24 and 160×48, snapshotted with insta. The data holds a Korean name
//! and a name that carried escape sequences; the clock and ids are fixed, so
//! the snapshots are stable.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crossterm::event::{KeyCode, KeyEvent};
use gpures_proto::{
    GpuFlag, GpuProcess, GpuTelemetry, Holder, HostTelemetry, Period, Reservation,
    ReservationStatus, Resource, ResourceKind, ResourceStatus, Role, StatusReport, SyncState,
    UserInfo, UserRef,
};
use gpures_tui::tui::app::{App, Effect, Msg, Preview, Screen, Snapshot};
use gpures_tui::tui::render;
use uuid::Uuid;

fn tz() -> Tz {
    "Asia/Seoul".parse().expect("zone")
}

fn now() -> DateTime<Utc> {
    // Thursday 2026-11-26 10:17 in Seoul.
    Utc.with_ymd_and_hms(2026, 11, 26, 1, 17, 0)
        .single()
        .expect("time")
}

fn user(id: i64, email: &str, name: &str, role: Role) -> UserInfo {
    UserInfo {
        id,
        email: email.into(),
        display_name: name.into(),
        role,
        unix_user: email.split('@').next().unwrap_or("x").into(),
        disabled: false,
        created_at: now(),
    }
}

fn users() -> Vec<UserInfo> {
    vec![
        user(1, "minsu.kim@lab.example", "김민수", Role::Admin),
        user(2, "seoyeon.lee@lab.example", "이서연", Role::Member),
        user(3, "alex@lab.example", "Alex Morgan", Role::Member),
        user(
            4,
            "eve@lab.example",
            "\u{1b}[31mEve\u{1b}]0;pwned\u{7}\u{202e}",
            Role::Member,
        ),
    ]
}

fn resources() -> Vec<Resource> {
    (0..4)
        .map(|i| Resource {
            id: i + 1,
            name: format!("gpu{i}"),
            host: "gpu01".into(),
            kind: ResourceKind::Gpu,
            gpu_index: Some(i32::try_from(i).expect("small")),
            gpu_uuid: Some(format!("GPU-0000{i}")),
            description: "H100 80GB".into(),
            active: true,
        })
        .collect()
}

fn reservation(n: u128, u: &UserInfo, res: i64, from_h: i64, to_h: i64, note: &str) -> Reservation {
    let base = Utc
        .with_ymd_and_hms(2026, 11, 26, 1, 0, 0)
        .single()
        .expect("time");
    Reservation {
        id: Uuid::from_u128(n),
        booking_id: Uuid::from_u128(n),
        resource_id: res,
        resource_name: format!("gpu{}", res - 1),
        user: UserRef {
            id: u.id,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
        },
        period: Period {
            start: base + TimeDelta::hours(from_h),
            end: base + TimeDelta::hours(to_h),
        },
        note: note.into(),
        status: ReservationStatus::Active,
        created_at: now(),
        updated_at: now(),
        sync: match n {
            1 => SyncState::Pending,
            2 => SyncState::Failed("insert: 403 forbidden".into()),
            _ => SyncState::Synced,
        },
        change_reason: None,
    }
}

fn telemetry(id: i64) -> GpuTelemetry {
    let busy = id == 1;
    GpuTelemetry {
        host: "gpu01".into(),
        index: u32::try_from(id - 1).expect("small"),
        uuid: format!("GPU-0000{}", id - 1),
        name: "NVIDIA H100 80GB HBM3".into(),
        sampled_at: now(),
        utilization_pct: Some(if busy { 100 } else { 0 }),
        memory_used_mib: Some(if busy { 2787 } else { 0 }),
        memory_total_mib: Some(81559),
        temperature_c: Some(55),
        power_w: Some(633.4),
        history: if busy {
            vec![0, 10, 40, 90, 100, 100, 100, 95, 100, 100]
        } else {
            vec![0; 10]
        },
        processes: if busy {
            vec![
                GpuProcess {
                    pid: 634,
                    name: "python3".into(),
                    used_memory_mib: Some(1386),
                    unix_user: Some("root".into()),
                },
                GpuProcess {
                    pid: 638,
                    name: "python3".into(),
                    used_memory_mib: Some(1386),
                    unix_user: Some("labuser1".into()),
                },
                GpuProcess {
                    pid: 9999,
                    name: "python3".into(),
                    used_memory_mib: None,
                    unix_user: None,
                },
            ]
        } else {
            vec![]
        },
    }
}

fn app() -> App {
    let mut app = App::new(tz(), now(), true, "minsu.kim@lab.example")
        .with_host("gpu01")
        .with_no_color(true);
    let us = users();
    let rs = vec![
        reservation(1, &us[0], 1, -2, 3, "LLM fine-tuning"),
        reservation(2, &us[1], 1, 4, 9, "eval"),
        reservation(3, &us[2], 2, -1, 6, "DDP sweep"),
        reservation(4, &us[2], 3, -1, 6, "DDP sweep"),
        reservation(5, &us[3], 4, 2, 5, "\u{1b}[2Jnote with escapes"),
    ];
    let status = StatusReport {
        generated_at: now(),
        host: "gpu01".into(),
        resources: resources()
            .into_iter()
            .map(|r| ResourceStatus {
                current: rs
                    .iter()
                    .find(|x| x.resource_id == r.id && x.period.contains(now()))
                    .cloned(),
                next: rs
                    .iter()
                    .find(|x| x.resource_id == r.id && x.period.start > now())
                    .cloned(),
                telemetry: (r.id < 4).then(|| telemetry(r.id)),
                flags: if r.id == 1 {
                    vec![GpuFlag::UnreservedUse {
                        unix_user: "labuser1".into(),
                        pid: 638,
                    }]
                } else if r.id == 2 {
                    vec![GpuFlag::IdleReservation { idle_minutes: 35 }]
                } else {
                    vec![]
                },
                resource: r,
            })
            .collect(),
        hosts: vec![HostTelemetry {
            host: "gpu01".into(),
            backend: "nvidia-smi".into(),
            sampled_at: Some(now()),
            note: None,
        }],
        calendar: Some(gpures_proto::CalendarStatus {
            enabled: true,
            queued: 3,
            failed: 1,
            oldest_pending_secs: Some(42),
            last_error: Some("insert: 403 forbidden".into()),
        }),
    };
    let effects = app.apply(Msg::Loaded(Box::new(Snapshot {
        me: Some(us[0].clone()),
        resources: resources(),
        reservations: rs.clone(),
        window: Some(Period {
            start: now() - TimeDelta::days(1),
            end: now() + TimeDelta::days(14),
        }),
        mine: vec![rs[0].clone()],
        status: Some(status),
        users: us,
    })));
    assert!(matches!(effects.as_slice(), [Effect::Watch]));
    app
}

fn press(a: &mut App, code: KeyCode) -> Vec<Effect> {
    a.key(KeyEvent::from(code))
}

fn type_text(a: &mut App, text: &str) {
    for c in text.chars() {
        press(a, KeyCode::Char(c));
    }
}

/// The sequence number of the availability check among `effects`.
fn check_seq(effects: &[Effect]) -> u64 {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Check { seq, .. } => Some(*seq),
            _ => None,
        })
        .expect("the form checks availability")
}

fn both(name: &str, app: &mut App) {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
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
fn timeline() {
    let mut a = app();
    both("timeline", &mut a);
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
    });
    assert!(matches!(
        a.booking_form().map(|f| &f.preview),
        Some(Preview::Taken(_))
    ));
    both("booking_form", &mut a);
}

#[test]
fn edit_form_and_confirm() {
    let mut a = app();
    // The cursor starts on gpu0 now, inside 김민수's own reservation.
    let seq = check_seq(&press(&mut a, KeyCode::Char('e')));
    a.apply(Msg::Checked {
        seq,
        holders: vec![],
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
        screen.contains("root:634 labuser1:638 unknown:9999"),
        "{screen}"
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
    for listed in ["Booking form", "Filter prompt", "Questions", "C-r", "Bksp"] {
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
}
