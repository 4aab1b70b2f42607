//! The TUI never shows a wrong or stale state, driven by keys on the real
//! app: a filter never makes a held cell "free", a slow availability answer
//! never passes for the current form, a released sliver never hides the
//! booking in its cell, `r` asks first, many resources scroll with whole
//! names, and the cursor shows on a Korean name.

mod common;

use chrono::TimeDelta;
use common::{app, check_seq, now, press, reservation, type_text, users};
use crossterm::event::KeyCode;
use gpures_proto::{Period, Resource, ResourceKind};
use gpures_tui::tui::app::{App, Effect, Msg, Preview, Snapshot};
use gpures_tui::tui::{draw, render};
use ratatui::style::Modifier;

/// The footer line that describes the cell under the cursor.
fn footer(a: &mut App) -> String {
    let screen = render(a, 160, 48);
    let lines: Vec<&str> = screen.lines().collect();
    lines[lines.len() - 2].to_owned()
}

#[test]
fn a_filter_hides_bars_but_never_calls_a_held_cell_free() {
    let mut a = app();
    // The cursor starts on gpu0 now, inside 김민수's reservation.
    assert!(footer(&mut a).contains("김민수"), "{}", footer(&mut a));
    press(&mut a, KeyCode::Char('/'));
    type_text(&mut a, "alex");
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.timeline().filter.as_deref(), Some("alex"));
    let screen = render(&mut a, 160, 48);
    assert!(!screen.contains("*김민수"), "the bar is hidden:\n{screen}");
    let line = footer(&mut a);
    assert!(!line.contains("free"), "a held cell is not free: {line}");
    assert!(
        line.contains("김민수"),
        "the footer names the holder: {line}"
    );
    // `e` still edits the one reservation there, not a free slot.
    assert!(a.reservation_at_cursor().is_some());
}

#[test]
fn an_answer_for_what_the_form_said_before_is_never_shown() {
    let mut a = app();
    press(&mut a, KeyCode::Char('n'));
    // Retype the start fast: "tomorrow 9" is checked on its way to
    // "tomorrow 9:30", and its answer arrives late.
    for _ in 0..20 {
        press(&mut a, KeyCode::Backspace);
    }
    let mut seqs = Vec::new();
    for c in "tomorrow 9:30".chars() {
        let effects = press(&mut a, KeyCode::Char(c));
        if effects.iter().any(|e| matches!(e, Effect::Check { .. })) {
            seqs.push((c, check_seq(&effects)));
        }
    }
    let early = seqs
        .iter()
        .find(|(c, _)| *c == '9')
        .map(|(_, s)| *s)
        .expect("\"tomorrow 9\" is checked");
    let last = seqs.last().map(|(_, s)| *s).expect("checked");
    assert!(last > early);
    a.apply(Msg::Checked {
        seq: early,
        holders: vec![],
        refusal: None,
        blocks: vec![],
    });
    let form = a.booking_form().expect("form");
    assert!(
        matches!(form.preview, Preview::Checking),
        "the late answer is dropped: {:?}",
        form.preview
    );
    // Even when the form cannot be checked at all, an old answer stays out.
    let early = last;
    press(&mut a, KeyCode::Char('x'));
    a.apply(Msg::Checked {
        seq: early,
        holders: vec![],
        refusal: None,
        blocks: vec![],
    });
    let form = a.booking_form().expect("form");
    assert!(
        matches!(form.preview, Preview::Invalid(_)),
        "an unreadable start is said so, not free: {:?}",
        form.preview
    );
    let seq = check_seq(&press(&mut a, KeyCode::Backspace));
    a.apply(Msg::Checked {
        seq,
        holders: vec![],
        refusal: None,
        blocks: vec![],
    });
    assert!(matches!(
        a.booking_form().map(|f| &f.preview),
        Some(Preview::Free)
    ));
}

#[test]
fn a_released_sliver_never_hides_the_booking_in_its_cell() {
    let mut a = app();
    let us = users();
    let mut rs = a.data().reservations.clone();
    // 김민수 released a booking one minute after it began, then booked the
    // same GPU again: both now share the cursor's cell.
    let mut sliver = reservation(9, &us[0], 1, 0, 0, "released");
    sliver.period = Period {
        start: now() - TimeDelta::minutes(2),
        end: now() - TimeDelta::minutes(1),
    };
    let mut empty = reservation(10, &us[0], 1, 0, 0, "zero");
    empty.period = Period {
        start: now(),
        end: now(),
    };
    rs.retain(|r| r.resource_id != 1);
    let mut real = reservation(11, &us[0], 1, 0, 0, "the real one");
    real.period = Period {
        start: now() - TimeDelta::minutes(1),
        end: now() + TimeDelta::hours(2),
    };
    rs.extend([sliver, empty, real]);
    a.apply(Msg::Loaded(Box::new(Snapshot {
        reservations: rs,
        ..snapshot_of(&a)
    })));
    let at = a.reservation_at_cursor().expect("a reservation here");
    assert_eq!(at.note, "the real one");
    assert!(footer(&mut a).contains("the real one"));
}

#[test]
fn release_asks_first_like_cancel() {
    let mut a = app();
    let effects = press(&mut a, KeyCode::Char('r'));
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Release(_))),
        "nothing is released by one key"
    );
    let confirm = a.confirm().expect("r asks");
    assert!(confirm.question.starts_with("Release gpu0"));
    assert!(press(&mut a, KeyCode::Char('n')).is_empty());
    assert!(a.confirm().is_none(), "n keeps it");
    press(&mut a, KeyCode::Char('r'));
    let effects = press(&mut a, KeyCode::Char('y'));
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Release(_))),
        "{effects:?}"
    );
}

/// The loaded data of `a` again, as a snapshot to change.
fn snapshot_of(a: &App) -> Snapshot {
    let d = a.data();
    Snapshot {
        me: d.me.clone(),
        resources: d.resources.clone(),
        reservations: d.reservations.clone(),
        window: d.fetched,
        mine: d.mine.clone(),
        status: d.status.clone(),
        users: d.users.clone(),
        queue: d.queue.clone(),
        notifications: d.notifications.clone(),
        unread: d.unread,
        blocks: d.blocks.clone(),
        usage: d.usage.clone(),
        policies: d.policies.clone(),
        groups: d.groups.clone(),
        disabled: d.disabled.clone(),
    }
}

#[test]
fn twenty_six_resources_scroll_at_80x24_with_whole_names() {
    let mut a = app();
    let resources: Vec<Resource> = (0..26)
        .map(|i| {
            let (node, gpu) = if i < 6 { (1, i) } else { (2, i - 6) };
            Resource {
                id: i + 1,
                name: format!("node{node}-gpu{gpu}"),
                host: "gpu01".into(),
                kind: ResourceKind::Gpu,
                gpu_index: None,
                gpu_uuid: None,
                description: String::new(),
                active: true,
            }
        })
        .collect();
    a.apply(Msg::Loaded(Box::new(Snapshot {
        resources,
        ..snapshot_of(&a)
    })));
    let first = render(&mut a, 80, 24);
    assert!(first.contains("node1-gpu0"), "{first}");
    for _ in 0..25 {
        press(&mut a, KeyCode::Down);
    }
    assert_eq!(a.timeline().cursor_row, 25);
    let screen = render(&mut a, 80, 24);
    assert!(
        screen.contains("node2-gpu19"),
        "the cursor row is on screen:\n{screen}"
    );
    assert!(!screen.contains("node1-gpu0 "), "the top scrolled away");
    // Every name is whole: node2-gpu10 … node2-gpu19 are told apart.
    let rows: String = screen.lines().take(22).collect::<Vec<_>>().join("\n");
    for n in 10..20 {
        let name = format!("node2-gpu{n}");
        assert_eq!(
            rows.matches(name.as_str()).count(),
            1,
            "{name} once:\n{screen}"
        );
    }
    assert!(
        screen.contains("node2-gpu19 ·"),
        "the footer describes the cursor row"
    );
    // Back up: the view follows the cursor to the top.
    for _ in 0..25 {
        press(&mut a, KeyCode::Up);
    }
    assert!(render(&mut a, 80, 24).contains("node1-gpu0"));
    assert_eq!(a.timeline().top_row, 0);
}

/// `name@host` of the resource under the cursor.
fn cursor_at(a: &App) -> Option<String> {
    a.timeline()
        .cursor_resource(a.ctx())
        .map(|r| format!("{}@{}", r.name, r.host))
}

#[test]
fn resources_of_several_hosts_are_grouped_under_a_header_per_host() {
    use crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    use gpures_tui::tui::screens::timeline::Line;
    let mut a = app();
    // This daemon is gpu01; node2 and node3 share its database. Listed
    // mixed up, as a shared database may return them.
    let resources: Vec<Resource> = (0..24)
        .map(|i| {
            let host = ["node3", "gpu01", "node2"][usize::try_from(i % 3).expect("small")];
            Resource {
                id: i + 1,
                name: format!("gpu{}", i / 3),
                host: host.into(),
                kind: ResourceKind::Gpu,
                gpu_index: Some(i32::try_from(i / 3).expect("small")),
                gpu_uuid: None,
                description: String::new(),
                active: true,
            }
        })
        .collect();
    a.apply(Msg::Loaded(Box::new(Snapshot {
        resources,
        ..snapshot_of(&a)
    })));
    let (w, h) = (80u16, 24u16);
    let (origin, cols, rows) = gpures_tui::tui::draw::geometry(
        ratatui::layout::Rect::new(0, 0, w, h),
        a.timeline().name_col,
    );
    a.apply(Msg::Resized { cols, rows });
    let screen = render(&mut a, w, h);
    let lines: Vec<&str> = screen.lines().collect();
    let header = |host: &str| lines.iter().position(|l| l.contains(&format!("── {host}")));
    let own = header("gpu01 (this host) · 8 resources").expect(&screen);
    assert!(
        lines[own + 1].contains(" gpu0 "),
        "names without @host under a header:
{screen}"
    );
    assert!(!screen.contains("gpu0@"), "{screen}");
    let node2 = header("node2 · 8 resources").expect(&screen);
    assert_eq!(
        node2,
        own + 9,
        "this host's first, then the others by name:
{screen}"
    );

    // Down walks resources, never a header, and the view keeps the cursor
    // (and its host's header) on screen.
    for _ in 0..8 {
        press(&mut a, KeyCode::Down);
    }
    assert_eq!(cursor_at(&a).as_deref(), Some("gpu0@node2"));
    for _ in 0..9 {
        press(&mut a, KeyCode::Down);
    }
    let screen = render(&mut a, w, h);
    assert_eq!(cursor_at(&a).as_deref(), Some("gpu1@node3"));
    assert!(screen.contains("── node3 · 8 resources"), "{screen}");
    assert!(
        !screen.contains("── gpu01"),
        "scrolled past this host:
{screen}"
    );
    // Back to the first of node3: its header shows above it.
    press(&mut a, KeyCode::Up);
    let top = a.timeline().top_row;
    let shown = a.timeline().lines(a.ctx());
    let at = shown
        .iter()
        .position(|l| matches!(l, Line::Resource(i, _) if *i == a.timeline().cursor_row))
        .expect("the cursor's line");
    assert!(
        at > top && at < top + rows,
        "{at} {top}: the header above it shows"
    );
    // A click on a header selects nothing; on a resource, that resource.
    // node3's header: the last on screen.
    let header_line = shown[top..(top + rows).min(shown.len())]
        .iter()
        .rposition(|l| matches!(l, Line::Host { .. }))
        .expect("a header on screen");
    let before = a.timeline().cursor_row;
    let click = |row: usize| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: origin.0 + 2,
        row: origin.1 + u16::try_from(row).expect("small"),
        modifiers: KeyModifiers::empty(),
    };
    a.mouse(click(header_line), origin);
    assert_eq!(
        a.timeline().cursor_row,
        before,
        "a header is not a resource"
    );
    a.mouse(click(header_line + 1), origin);
    assert_eq!(cursor_at(&a).as_deref(), Some("gpu0@node3"));
}

#[test]
fn the_cursor_shows_on_every_column_of_a_korean_name() {
    let mut a = app();
    let (w, h) = (80u16, 24u16);
    let (origin, cols, rows) = draw::geometry(
        ratatui::layout::Rect::new(0, 0, w, h),
        a.timeline().name_col,
    );
    a.apply(Msg::Resized { cols, rows });
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).expect("terminal");
    // Walk the cursor along gpu0's row, across 김민수's bar.
    press(&mut a, KeyCode::Char('t'));
    for _ in 0..8 {
        press(&mut a, KeyCode::Left);
    }
    let mut on_wide = 0;
    for _ in 0..16 {
        terminal.draw(|f| draw::draw(&a, f)).expect("draw");
        let buf = terminal.backend().buffer();
        let x = origin.0 + u16::try_from(a.timeline().cursor_col).expect("small");
        let y = origin.1 + u16::try_from(a.timeline().cursor_row).expect("small");
        let left = &buf[(x - 1, y)];
        let shown = if unicode_width::UnicodeWidthStr::width(left.symbol()) > 1 {
            on_wide += 1;
            left
        } else {
            &buf[(x, y)]
        };
        assert!(
            shown.modifier.contains(Modifier::REVERSED),
            "the cursor at column {} is visible ({:?})",
            a.timeline().cursor_col,
            shown.symbol()
        );
        press(&mut a, KeyCode::Right);
    }
    assert!(
        on_wide > 0,
        "the walk crossed the second column of a Korean character"
    );
}

#[test]
fn a_check_without_a_connection_says_so_and_asks_again_when_back() {
    let mut a = app();
    press(&mut a, KeyCode::Char('n'));
    assert!(matches!(
        a.booking_form().map(|f| &f.preview),
        Some(Preview::Checking)
    ));
    a.apply(Msg::Disconnected(
        "lost the connection to the daemon".into(),
    ));
    let form = a.booking_form().expect("form");
    assert!(
        matches!(&form.preview, Preview::Invalid(why) if why.contains("no connection")),
        "not \"checking…\" forever: {:?}",
        form.preview
    );
    assert!(render(&mut a, 160, 48).contains("lost the connection"));
    let effects = a.apply(Msg::Reconnected);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Check { .. })),
        "the form checks again: {effects:?}"
    );
    assert!(effects.iter().any(|e| matches!(e, Effect::Refresh { .. })));
}

#[test]
fn one_gpu_of_a_booking_asks_this_gpu_or_all() {
    let mut a = app();
    // The viewer's DDP sweep on gpu1 and gpu2 is one booking.
    let mut rs = a.data().reservations.clone();
    let booking = uuid::Uuid::from_u128(3);
    let me = a.data().me.clone().expect("signed in");
    for r in rs.iter_mut().filter(|r| r.note == "DDP sweep") {
        r.booking_id = booking;
        r.user = gpures_proto::UserRef {
            id: me.id,
            email: me.email.clone(),
            display_name: me.display_name.clone(),
        };
    }
    a.apply(Msg::Loaded(Box::new(Snapshot {
        reservations: rs,
        ..snapshot_of(&a)
    })));
    press(&mut a, KeyCode::Down); // gpu1, inside the sweep
    let line = footer(&mut a);
    assert!(
        line.contains("booking 00000000 (2 GPUs)"),
        "the footer names the booking: {line}"
    );
    press(&mut a, KeyCode::Char('x'));
    let q = a.confirm().expect("x asks").question.clone();
    assert!(q.contains("one of 2 GPUs of booking 00000000"), "{q}");
    assert!(q.contains("a all 2"), "{q}");
    let effects = press(&mut a, KeyCode::Char('a'));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::CancelBooking(id) if *id == booking)),
        "{effects:?}"
    );
    // y is this GPU only.
    press(&mut a, KeyCode::Char('x'));
    let effects = press(&mut a, KeyCode::Char('y'));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Cancel(id) if *id == uuid::Uuid::from_u128(3))),
        "{effects:?}"
    );
    // A booking of one GPU asks plain y/n.
    press(&mut a, KeyCode::Up);
    press(&mut a, KeyCode::Char('x'));
    let q = a.confirm().expect("x asks").question.clone();
    assert!(q.ends_with("(y/n)"), "{q}");
}

#[test]
fn the_footer_always_keeps_help_and_quit() {
    let mut a = app();
    for width in [80u16, 100, 60] {
        let screen = render(&mut a, width, 24);
        let last = screen.lines().last().expect("footer").to_owned();
        assert!(
            last.contains("? help · q quit"),
            "{width} columns: {last:?}"
        );
    }
    let whole = render(&mut a, 200, 24);
    assert!(
        whole.lines().last().is_some_and(|l| !l.contains('…')),
        "nothing is left out when it fits"
    );
}

#[test]
fn a_waiting_request_shows_its_place_and_a_grant_is_told_at_once() {
    let mut a = app();
    let me = users()[0].clone();
    let entry = gpures_proto::QueueEntry {
        id: uuid::Uuid::from_u128(0xabcd_ef01 << 96),
        user: gpures_proto::UserRef {
            id: me.id,
            email: me.email.clone(),
            display_name: me.display_name.clone(),
        },
        gpus: 2,
        length_minutes: 90,
        host: None,
        until: None,
        note: String::new(),
        created_at: now(),
        state: gpures_proto::QueueState::Waiting,
        position: Some(2),
        estimated_start: Some(now() + TimeDelta::hours(3)),
        ended_at: None,
        booking_id: None,
    };
    a.apply(Msg::Loaded(Box::new(Snapshot {
        queue: vec![entry.clone()],
        ..snapshot_of(&a)
    })));
    press(&mut a, KeyCode::Tab);
    let screen = render(&mut a, 100, 30);
    assert!(
        screen.contains("Waiting in the queue") && screen.contains("#2  2 GPUs for 1h 30m"),
        "{screen}"
    );
    assert!(screen.contains("(id abcdef01)"), "{screen}");
    // The next load finds it granted: the footer says so at once.
    let granted = gpures_proto::QueueEntry {
        state: gpures_proto::QueueState::Granted,
        position: None,
        estimated_start: None,
        ended_at: Some(now()),
        booking_id: Some(uuid::Uuid::from_u128(0x1234_5678 << 96)),
        ..entry
    };
    a.apply(Msg::Loaded(Box::new(Snapshot {
        queue: vec![granted],
        ..snapshot_of(&a)
    })));
    let message = a.message().map(|m| m.text.clone()).unwrap_or_default();
    assert!(
        message
            .contains("granted from the queue: 2 GPUs for 90 min, starting now (booking 12345678)"),
        "{message}"
    );
    let screen = render(&mut a, 100, 30);
    assert!(!screen.contains("Waiting in the queue"), "{screen}");
}

#[test]
fn an_admin_says_why_before_changing_someone_elses_reservation() {
    let mut a = app();
    // gpu1 holds Alex's sweep; the viewer is an admin.
    press(&mut a, KeyCode::Down);
    press(&mut a, KeyCode::Char('x'));
    assert!(a.confirm().is_none(), "no plain y/n for someone else's");
    let screen = render(&mut a, 100, 30);
    assert!(
        screen.contains("the owner sees the reason") && screen.contains("Why?"),
        "{screen}"
    );
    let effects = press(&mut a, KeyCode::Enter);
    assert!(effects.is_empty(), "no reason, no change: {effects:?}");
    type_text(&mut a, "node maintenance");
    let effects = press(&mut a, KeyCode::Enter);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::ChangeWithReason {
                kind: gpures_proto::ChangeKind::Cancel,
                reason,
                ..
            } if reason == "node maintenance"
        )),
        "{effects:?}"
    );
    // Editing someone else's asks why in the form.
    press(&mut a, KeyCode::Char('e'));
    let form = a.booking_form().expect("the edit form");
    assert_eq!(form.fields().last().map(|f| f.label), Some("Why (shown)"));
}

#[test]
fn a_click_on_a_tab_opens_its_screen() {
    use crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    use gpures_tui::tui::app::Screen;
    let mut a = app();
    let screen = render(&mut a, 120, 30);
    let title = screen.lines().next().expect("title bar");
    for (label, want) in [
        ("My reservations", Screen::Mine),
        ("Status", Screen::Status),
        ("Admin", Screen::Admin),
        ("Timeline", Screen::Timeline),
    ] {
        let at = title.find(label).expect("the tab is drawn");
        let column = u16::try_from(title[..at].chars().count() + 2).expect("column");
        a.mouse(
            MouseEvent {
                kind: MouseEventKind::Down(MouseButton::Left),
                column,
                row: 0,
                modifiers: KeyModifiers::empty(),
            },
            (0, 0),
        );
        assert_eq!(a.screen(), want, "a click on {label}");
    }
    // A click between tabs changes nothing.
    a.mouse(
        MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 2,
            row: 0,
            modifiers: KeyModifiers::empty(),
        },
        (0, 0),
    );
    assert_eq!(a.screen(), Screen::Timeline);
}

#[test]
fn an_admin_approves_or_denies_a_pending_booking_with_one_key() {
    let mut a = app();
    let mut s = snapshot_of(&a);
    s.reservations[0].pending = Some(gpures_proto::Pending {
        until: now() + TimeDelta::hours(1),
        reason: "논문 마감 deadline".into(),
    });
    a.apply(Msg::Loaded(Box::new(s)));
    let line = footer(&mut a);
    assert!(line.contains("pending approval until"), "{line}");
    let screen = render(&mut a, 160, 48);
    assert!(screen.contains("*?김민수"), "the bar marks it: {screen}");

    // A: the question, then y approves.
    press(&mut a, KeyCode::Char('A'));
    let screen = render(&mut a, 160, 48);
    assert!(screen.contains("Approve 김민수"), "{screen}");
    let effects = press(&mut a, KeyCode::Char('y'));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Decide {
                approve: true,
                reason: None,
                ..
            }
        )),
        "{effects:?}"
    );
    // D: the reason, then Enter denies with it.
    press(&mut a, KeyCode::Char('D'));
    type_text(&mut a, "queue is long");
    let effects = press(&mut a, KeyCode::Enter);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::Decide { approve: false, reason: Some(r), .. } if r == "queue is long"
        )),
        "{effects:?}"
    );
    // Not pending: said so, nothing asked.
    let mut s = snapshot_of(&a);
    s.reservations[0].pending = None;
    a.apply(Msg::Loaded(Box::new(s)));
    let effects = press(&mut a, KeyCode::Char('A'));
    assert!(effects.is_empty(), "{effects:?}");
    assert!(
        footer(&mut a).contains("not waiting for approval"),
        "{}",
        footer(&mut a)
    );
}

#[test]
fn x_on_an_occurrence_asks_this_one_or_this_and_every_later_one() {
    let mut a = app();
    let series = uuid::Uuid::from_u128(0x5e);
    let mut s = snapshot_of(&a);
    s.reservations[0].series_id = Some(series);
    a.apply(Msg::Loaded(Box::new(s)));
    press(&mut a, KeyCode::Char('x'));
    let screen = render(&mut a, 160, 48);
    assert!(screen.contains("recurring booking"), "{screen}");
    assert!(
        screen.contains("n no"),
        "the whole question shows: {screen}"
    );
    assert!(
        screen.contains("y this one · a this and every later one · any other key no"),
        "{screen}"
    );
    let effects = press(&mut a, KeyCode::Char('a'));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::CancelSeries { series_id, .. } if *series_id == series)),
        "{effects:?}"
    );
    press(&mut a, KeyCode::Char('x'));
    let effects = press(&mut a, KeyCode::Char('y'));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::CancelBooking(_))),
        "{effects:?}"
    );
}

#[test]
fn editing_an_occurrence_asks_this_one_or_this_and_every_later_one() {
    let mut a = app();
    let series = uuid::Uuid::from_u128(0x5e);
    let mut s = snapshot_of(&a);
    s.reservations[0].series_id = Some(series);
    let was = s.reservations[0].period;
    a.apply(Msg::Loaded(Box::new(s)));
    press(&mut a, KeyCode::Char('e'));
    assert!(a.booking_form().is_some(), "the edit form");
    // The end (where the edit form opens) an hour later.
    for _ in 0..40 {
        press(&mut a, KeyCode::Backspace);
    }
    let later = (was.end + TimeDelta::hours(1))
        .with_timezone(&common::tz())
        .format("%Y-%m-%d %H:%M")
        .to_string();
    type_text(&mut a, &later);
    press(&mut a, KeyCode::Enter);
    let screen = render(&mut a, 160, 48);
    assert!(screen.contains("recurring booking"), "{screen}");
    assert!(
        screen.contains("y this one · a this and every later one · any other key no"),
        "{screen}"
    );
    let effects = press(&mut a, KeyCode::Char('a'));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::EditSeries { series_id, this, new, .. }
                if *series_id == series && *this == was
                    && new.start == was.start && new.end == was.end + TimeDelta::hours(1)
        )),
        "{effects:?}"
    );
}

#[test]
fn an_admin_edits_lab_policy_and_groups_from_the_admin_screen() {
    let mut a = app();
    press(&mut a, KeyCode::BackTab);
    assert_eq!(a.screen(), gpures_tui::tui::app::Screen::Admin);
    press(&mut a, KeyCode::Char(':'));
    // A command that does not read: said in the prompt, which stays open.
    type_text(&mut a, "policy set nap-time 3");
    assert!(press(&mut a, KeyCode::Enter).is_empty());
    let screen = render(&mut a, 80, 24);
    assert!(screen.contains("unknown rule"), "{screen}");
    for _ in 0.."nap-time 3".len() {
        press(&mut a, KeyCode::Backspace);
    }
    type_text(&mut a, "gpu-hours-week 48 --group 비전");
    match press(&mut a, KeyCode::Enter).as_slice() {
        [Effect::SetPolicy(set)] => {
            assert_eq!(set.value, Some(48 * 60));
            assert_eq!(set.target, gpures_proto::PolicyTarget::Group("비전".into()));
        }
        other => panic!("{other:?}"),
    }
    press(&mut a, KeyCode::Char(':'));
    type_text(&mut a, "group member add 비전 alex@lab.example");
    assert!(matches!(
        press(&mut a, KeyCode::Enter).as_slice(),
        [Effect::ChangeGroup(
            gpures_proto::GroupChange::AddMember { .. }
        )]
    ));
}

#[test]
fn notification_settings_switch_each_channel_and_kind_with_one_key() {
    use gpures_proto::{NotificationKind, NotifyChange, NotifySettings};
    let mut a = app();
    let effects = press(&mut a, KeyCode::Char('N'));
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Notify(None))),
        "{effects:?}"
    );
    a.apply(Msg::NotifyLoaded(
        Box::new(NotifySettings {
            webhook_url: None,
            email: false,
            email_available: false,
            terminal: false,
            muted: vec![NotificationKind::Granted],
        }),
        false,
    ));
    let screen = render(&mut a, 100, 30);
    assert!(screen.contains("Where notifications go"), "{screen}");
    assert!(
        screen.contains("[-] email: this host sends none"),
        "{screen}"
    );
    assert!(screen.contains("[ ] granted"), "muted: {screen}");
    assert!(screen.contains("[x] starts-soon"), "{screen}");
    let change = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Notify(Some(c)) => Some(c.clone()),
            _ => None,
        })
    };
    // Email cannot be switched on where the host sends none.
    press(&mut a, KeyCode::Down);
    assert_eq!(change(&press(&mut a, KeyCode::Char(' '))), None);
    // Terminals on.
    press(&mut a, KeyCode::Down);
    assert_eq!(
        change(&press(&mut a, KeyCode::Char(' '))),
        Some(NotifyChange {
            terminal: Some(true),
            ..NotifyChange::default()
        })
    );
    // "granted" (the third kind) back on.
    for _ in 0..3 {
        press(&mut a, KeyCode::Down);
    }
    assert_eq!(
        change(&press(&mut a, KeyCode::Enter)).map(|c| c.unmute),
        Some(vec![NotificationKind::Granted])
    );
    // The webhook: Enter edits, typed text goes to the field (even `q`).
    for _ in 0..10 {
        press(&mut a, KeyCode::Up);
    }
    press(&mut a, KeyCode::Enter);
    type_text(&mut a, "https://hooks.example/q");
    assert!(!a.should_quit());
    assert_eq!(
        change(&press(&mut a, KeyCode::Enter)).map(|c| c.webhook_url),
        Some(Some(Some("https://hooks.example/q".to_owned())))
    );
    // Emptied, it is removed.
    press(&mut a, KeyCode::Enter);
    for _ in 0..30 {
        press(&mut a, KeyCode::Backspace);
    }
    assert_eq!(
        change(&press(&mut a, KeyCode::Enter)).map(|c| c.webhook_url),
        Some(Some(None))
    );
    press(&mut a, KeyCode::Esc);
    assert!(!render(&mut a, 100, 30).contains("Where notifications go"));
}
