//! The lab the TUI tests draw: a fixed clock in Seoul, four users (one
//! Korean, one whose name carried escape sequences), four GPUs, five
//! reservations and telemetry, loaded into a real `App`.
#![allow(dead_code)] // each test binary uses a different part

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crossterm::event::{KeyCode, KeyEvent};
use gpures_proto::{
    GpuFlag, GpuProcess, GpuTelemetry, HostTelemetry, Period, Reservation, ReservationStatus,
    Resource, ResourceKind, ResourceStatus, Role, StatusReport, SyncState, UserInfo, UserRef,
};
use gpures_tui::tui::app::{App, Effect, Msg, Snapshot};
use uuid::Uuid;

pub fn tz() -> Tz {
    "Asia/Seoul".parse().expect("zone")
}

pub fn now() -> DateTime<Utc> {
    // Thursday 2026-11-26 10:17 in Seoul.
    Utc.with_ymd_and_hms(2026, 11, 26, 1, 17, 0)
        .single()
        .expect("time")
}

pub fn user(id: i64, email: &str, name: &str, role: Role) -> UserInfo {
    UserInfo {
        id,
        email: email.into(),
        display_name: name.into(),
        role,
        unix_user: email.split('@').next().unwrap_or("x").into(),
        disabled: false,
        created_at: now(),
        has_password: true,
    }
}

pub fn users() -> Vec<UserInfo> {
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

pub fn resources() -> Vec<Resource> {
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

pub fn reservation(
    n: u128,
    u: &UserInfo,
    res: i64,
    from_h: i64,
    to_h: i64,
    note: &str,
) -> Reservation {
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
        series_id: None,
        pending: None,
    }
}

pub fn telemetry(id: i64) -> GpuTelemetry {
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

pub fn app() -> App {
    let mut app = App::new(tz(), now(), true, "minsu.kim@lab.example")
        .with_host("gpu01")
        .with_no_color(true);
    let effects = app.apply(Msg::Loaded(Box::new(snapshot())));
    assert!(matches!(effects.as_slice(), [Effect::Watch]));
    app
}

/// gpu3 is blocked for a driver update from +8 h to +12 h.
pub fn maintenance() -> gpures_proto::Block {
    gpures_proto::Block {
        block_id: uuid::Uuid::from_u128(0xb10c),
        resource_id: 4,
        resource_name: "gpu3".into(),
        period: Period {
            start: now() + TimeDelta::hours(8),
            end: now() + TimeDelta::hours(12),
        },
        reason: "드라이버 업데이트 driver update".into(),
        created_by: "boss".into(),
    }
}

/// What the daemon answers a refresh with, in [`app`].
pub fn snapshot() -> Snapshot {
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
                block: (r.id == 4).then(maintenance),
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
        next: None,
    };
    Snapshot {
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
        queue: Vec::new(),
        notifications: Vec::new(),
        unread: 0,
        blocks: vec![maintenance()],
        // 김민수's running booking of gpu0 was used its first hour and idle
        // since; the DDP sweep's gpu1 idle its first half hour, then used.
        usage: [
            (1, -120, -60, true),
            (1, -60, 0, false),
            (2, -60, -30, false),
            (2, -30, 0, true),
        ]
        .into_iter()
        .map(|(resource_id, from, to, used)| gpures_proto::UsageSpan {
            resource_id,
            period: Period {
                start: now() + TimeDelta::minutes(from),
                end: now() + TimeDelta::minutes(to),
            },
            used,
        })
        .collect(),
        policies: vec![
            gpures_proto::Policy {
                id: 1,
                rule: gpures_proto::PolicyRule::MaxGpus,
                scope: gpures_proto::PolicyScope::Everyone,
                host: None,
                value: 2,
                threshold: None,
            },
            gpures_proto::Policy {
                id: 2,
                rule: gpures_proto::PolicyRule::GpuHoursWeek,
                scope: gpures_proto::PolicyScope::Group("비전".into()),
                host: None,
                value: 96 * 60,
                threshold: None,
            },
        ],
        groups: vec![gpures_proto::Group {
            name: "비전".into(),
            description: "vision team".into(),
            members: vec![UserRef {
                id: 1,
                email: "minsu.kim@lab.example".into(),
                display_name: "김민수".into(),
            }],
        }],
        disabled: vec![Resource {
            id: 9,
            name: "gpu7".into(),
            host: "gpu01".into(),
            kind: ResourceKind::Gpu,
            gpu_index: Some(7),
            gpu_uuid: None,
            description: "fan failure".into(),
            active: false,
        }],
    }
}

pub fn press(a: &mut App, code: KeyCode) -> Vec<Effect> {
    a.key(KeyEvent::from(code))
}

pub fn type_text(a: &mut App, text: &str) {
    for c in text.chars() {
        press(a, KeyCode::Char(c));
    }
}

/// The sequence number of the availability check among `effects`.
pub fn check_seq(effects: &[Effect]) -> u64 {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Check { seq, .. } => Some(*seq),
            _ => None,
        })
        .expect("the form checks availability")
}
