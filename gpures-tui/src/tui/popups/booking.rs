//! The booking form (and the edit form): GPUs, start, end or length, note,
//! with a live availability check after every change ([`Preview`]). The GPUs
//! field takes names, or "any N": the daemon then finds the earliest start
//! at or after the one typed at which N GPUs of one host are free, and the
//! preview says which and when before Enter books them.

use gpures_proto::{
    AnyBookingRequest, ApiError, BookingRequest, ChangeKind, ChangeTarget, Holder, Period,
    PolicyRefusal, Reservation, ReservationChange, SlotOption, SlotQuery, text,
};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use uuid::Uuid;

use crate::timefmt::{format_local, parse_duration, parse_time};
use crate::tui::component::{Component, Event, Popup};
use crate::tui::form::{Edit, Field, Fields};
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect, Msg};
use crate::tui::style::{centered, style};

const F_RESOURCES: usize = 0;
const F_START: usize = 1;
const F_END: usize = 2;
const F_NOTE: usize = 3;
/// Present when an admin edits someone else's reservation.
const F_REASON: usize = 4;

/// What the form's live preview says.
#[derive(Clone, Debug)]
pub enum Preview {
    Idle,
    Checking,
    Free,
    Taken(Vec<Holder>),
    /// Free, but lab policy would refuse it.
    Refused(Box<PolicyRefusal>),
    /// An admin blocked it for maintenance.
    Blocked(Vec<gpures_proto::Block>),
    /// "any N": these GPUs, from this start.
    Found {
        gpus: Vec<String>,
        period: Period,
    },
    Invalid(String),
}

/// What the GPUs field names.
enum Wanted {
    Named(Vec<i64>),
    /// "any N".
    Any(u32),
}

/// "any 2", "any2", "2 any": `Some(2)`.
fn any_count(text: &str) -> Option<u32> {
    let t = text.trim().to_lowercase();
    let n = t
        .strip_prefix("any")
        .or_else(|| t.strip_suffix("any"))?
        .trim();
    n.parse().ok()
}

/// The booking (or edit) form.
#[derive(Clone, Debug)]
pub struct BookingForm {
    /// `Some` when editing that reservation.
    pub editing: Option<Reservation>,
    pub form: Fields,
    pub preview: Preview,
    /// Sequence number of the availability check whose answer we await.
    pub check_seq: u64,
    /// One request id per booking the user means to make: a retry after a
    /// lost reply gets the same booking back.
    pub request_id: Uuid,
}

impl BookingForm {
    /// A new booking of `gpus` (names, space-separated) from `start`, 2 h long.
    pub fn new_booking(gpus: &str, start: &str) -> BookingForm {
        BookingForm {
            editing: None,
            form: Fields {
                fields: vec![
                    Field::new("GPUs", gpus),
                    Field::new("Start", start),
                    Field::new("End or length", "2h"),
                    Field::new("Note", ""),
                ],
                focus: F_START,
            },
            preview: Preview::Idle,
            check_seq: first_seq(),
            request_id: Uuid::new_v4(),
        }
    }

    /// The form that edits `r`; someone else's (an admin's edit) asks why.
    pub fn edit(r: &Reservation, ctx: &Ctx) -> BookingForm {
        let mut fields = vec![
            Field {
                read_only: true,
                ..Field::new("GPUs", r.resource_name.clone())
            },
            Field::new("Start", format_local(r.period.start, ctx.tz)),
            Field::new("End or length", format_local(r.period.end, ctx.tz)),
            Field::new("Note", text::sanitize(&r.note)),
        ];
        if !ctx.owns(r) {
            fields.push(Field::new("Why (shown)", ""));
        }
        BookingForm {
            editing: Some(r.clone()),
            form: Fields {
                fields,
                focus: F_END,
            },
            preview: Preview::Idle,
            check_seq: first_seq(),
            request_id: Uuid::new_v4(),
        }
    }

    pub fn fields(&self) -> &[Field] {
        &self.form.fields
    }

    /// The form's resources and period, or why they cannot be read.
    fn request(&self, ctx: &Ctx) -> Result<(Wanted, Period), String> {
        let fields = &self.form.fields;
        let mut ids = Vec::new();
        let any = match &self.editing {
            Some(_) => None,
            None => any_count(&fields[F_RESOURCES].value),
        };
        match &self.editing {
            Some(r) => ids.push(r.resource_id),
            None if any.is_some() => {}
            None => {
                for name in fields[F_RESOURCES]
                    .value
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                {
                    let r = ctx
                        .data
                        .resources
                        .iter()
                        .find(|r| r.name == name)
                        .ok_or_else(|| format!("no GPU named {}", text::sanitize(name)))?;
                    ids.push(r.id);
                }
            }
        }
        if ids.is_empty() && any.is_none() {
            return Err("name at least one GPU, or say any 2".into());
        }
        if any == Some(0) {
            return Err("any how many? any 1 or more".into());
        }
        let start =
            parse_time(&fields[F_START].value, ctx.now, ctx.tz).map_err(|e| e.to_string())?;
        let end_text = fields[F_END].value.trim();
        let end = match parse_duration(end_text) {
            Ok(span) => span.add_to(start, ctx.tz).map_err(|e| e.to_string())?,
            Err(_) => parse_time(end_text, ctx.now, ctx.tz).map_err(|_| {
                format!("cannot read {end_text:?} as an end or a length (2h, 14:00)")
            })?,
        };
        if end <= start {
            return Err("the end must be after the start".into());
        }
        let wanted = match any {
            Some(n) => Wanted::Any(n),
            None => Wanted::Named(ids),
        };
        Ok((wanted, Period { start, end }))
    }

    /// The daemon's query for "any N" over `period`.
    fn slot_query(n: u32, period: Period) -> SlotQuery {
        SlotQuery {
            gpus: n,
            length_minutes: u32::try_from((period.end - period.start).num_minutes())
                .unwrap_or(u32::MAX)
                .max(1),
            not_before: Some(period.start),
            host: None,
        }
    }

    /// Starts an availability check of what the form says now (or says why
    /// it cannot be checked).
    pub fn check(&mut self, ctx: &Ctx) -> Option<Effect> {
        // Every change starts a new round, even one that cannot be checked:
        // an answer still on its way for what the fields said before must
        // not be shown for what they say now.
        self.check_seq = self.check_seq.wrapping_add(1);
        match self.request(ctx) {
            Ok((Wanted::Named(resources), period)) => {
                self.preview = Preview::Checking;
                Some(Effect::Check {
                    seq: self.check_seq,
                    resources,
                    period,
                    ignore: self.editing.as_ref().map(|r| r.id),
                })
            }
            Ok((Wanted::Any(n), period)) => {
                self.preview = Preview::Checking;
                Some(Effect::FindSlots {
                    seq: self.check_seq,
                    query: Self::slot_query(n, period),
                })
            }
            Err(why) => {
                self.preview = Preview::Invalid(why);
                None
            }
        }
    }

    /// The answer to check `seq`; answers to older checks are dropped.
    pub fn checked(
        &mut self,
        seq: u64,
        holders: Vec<Holder>,
        refusal: Option<Box<PolicyRefusal>>,
        blocks: Vec<gpures_proto::Block>,
    ) {
        if self.check_seq == seq {
            self.preview = match refusal {
                _ if !holders.is_empty() => Preview::Taken(holders),
                _ if !blocks.is_empty() => Preview::Blocked(blocks),
                Some(r) => Preview::Refused(r),
                None => Preview::Free,
            };
        }
    }

    /// The answer to "any N" check `seq`: the earliest option of any host.
    pub fn found(&mut self, seq: u64, options: &[SlotOption]) {
        if self.check_seq != seq {
            return;
        }
        self.preview = match options.iter().min_by_key(|o| o.period.start) {
            Some(o) => Preview::Found {
                gpus: o.gpus.iter().map(|g| text::sanitize(&g.name)).collect(),
                period: o.period,
            },
            None => Preview::Invalid("nothing fits before the booking horizon".into()),
        };
    }

    /// The daemon refused the save: the slot is taken by `holders`.
    pub fn taken(&mut self, holders: Vec<Holder>) {
        self.preview = Preview::Taken(holders);
    }

    fn submit(&self, ctx: &Ctx) -> Vec<Event> {
        let (wanted, period) = match self.request(ctx) {
            Ok(r) => r,
            Err(why) => return vec![Event::Fail(why)],
        };
        let note = self.form.fields[F_NOTE].value.clone();
        let resources = match wanted {
            Wanted::Named(ids) => ids,
            Wanted::Any(n) => {
                let effect = Effect::BookAny(AnyBookingRequest {
                    request_id: self.request_id,
                    query: Self::slot_query(n, period),
                    note,
                });
                return vec![Event::Say("saving…".into()), Event::Call(effect)];
            }
        };
        let effect = match &self.editing {
            Some(r) if self.form.fields.len() > F_REASON => {
                let reason = text::sanitize_trimmed(&self.form.fields[F_REASON].value);
                if reason.is_empty() {
                    return vec![Event::Fail(
                        "say why in the last field: the owner is shown the reason".into(),
                    )];
                }
                Effect::ChangeWithReason {
                    target: ChangeTarget::Reservation(r.id),
                    kind: ChangeKind::Edit(ReservationChange {
                        start: (period.start != r.period.start).then_some(period.start),
                        end: (period.end != r.period.end).then_some(period.end),
                        note: (note != r.note).then_some(note),
                    }),
                    reason,
                }
            }
            Some(r) => {
                let note = (note != r.note).then_some(note);
                let this = Effect::Update(
                    r.id,
                    ReservationChange {
                        start: (period.start != r.period.start).then_some(period.start),
                        end: (period.end != r.period.end).then_some(period.end),
                        note: note.clone(),
                    },
                );
                if let Some(series_id) = r.series_id {
                    // An occurrence: this one, or it and every later one.
                    let following = Effect::EditSeries {
                        series_id,
                        this: r.period,
                        new: period,
                        note,
                        tz: ctx.tz,
                    };
                    let question = format!(
                        "Change {} · {}? It is an occurrence of a recurring booking: y this one · a this and every later one (the same change) · n no",
                        text::sanitize(&r.resource_name),
                        ctx.period_text(&period)
                    );
                    return vec![
                        Event::Close,
                        Event::open(super::confirm::Confirm {
                            question,
                            effect: this,
                            all: Some(following),
                        }),
                    ];
                }
                this
            }
            None => Effect::Book(BookingRequest {
                request_id: self.request_id,
                resources,
                period,
                note,
            }),
        };
        vec![Event::Say("saving…".into()), Event::Call(effect)]
    }
}

/// The start the form says, if it reads.
fn fields_start(form: &BookingForm, ctx: &Ctx) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_time(&form.form.fields[F_START].value, ctx.now, ctx.tz).ok()
}

/// Where a form's check numbers start: different for every form, so that a
/// late answer meant for a closed form never matches a new one.
fn first_seq() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}

impl Component for BookingForm {
    fn scope(&self) -> Scope {
        Scope::Form
    }

    fn update(&mut self, action: Action, ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Close => vec![Event::Close, Event::Say("not booked".into())],
            Action::Submit => self.submit(ctx),
            Action::Quit => vec![Event::Quit],
            other => match self.form.edit(other) {
                Edit::Changed => self.check(ctx).map(Event::Call).into_iter().collect(),
                Edit::Moved | Edit::Ignored => vec![],
            },
        }
    }

    fn apply(&mut self, msg: &Msg, ctx: &Ctx) -> Vec<Event> {
        match msg {
            Msg::Reconnected => return self.check(ctx).map(Event::Call).into_iter().collect(),
            Msg::Checked {
                seq,
                holders,
                refusal,
                blocks,
            } => self.checked(*seq, holders.clone(), refusal.clone(), blocks.clone()),
            Msg::SlotsFound { seq, options } => self.found(*seq, options),
            Msg::Failed(ApiError::Conflict { holders }) => self.taken(holders.clone()),
            Msg::Disconnected(_) if matches!(self.preview, Preview::Checking) => {
                self.preview = Preview::Invalid("cannot check: no connection to the daemon".into());
            }
            _ => {}
        }
        vec![]
    }

    fn hints(&self) -> &'static str {
        "Tab/↑↓ field · Enter save · Esc cancel"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let area = centered(size, 70.min(size.width), 12.min(size.height));
        frame.render_widget(Clear, area);
        let title = if self.editing.is_some() {
            " Edit reservation "
        } else {
            " New booking "
        };
        let block = Block::default().borders(Borders::ALL).title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let mut lines = Vec::new();
        for (i, f) in self.form.fields.iter().enumerate() {
            let focused = i == self.form.focus;
            let cursor = if focused { "▏" } else { "" };
            let st = if focused {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            let ro = if f.read_only { " (fixed)" } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!(" {:<14}", f.label), st),
                Span::raw(format!("{}{cursor}{ro}", text::sanitize(&f.value))),
            ]));
        }
        lines.push(Line::from(""));
        let (msg, st) = match &self.preview {
            Preview::Idle => (String::new(), Style::default()),
            Preview::Checking => (
                "checking…".into(),
                Style::default().add_modifier(Modifier::DIM),
            ),
            Preview::Free => (
                "✓ free".into(),
                style(
                    ctx,
                    Style::default()
                        .fg(Color::Green)
                        .add_modifier(Modifier::BOLD),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ),
            Preview::Taken(holders) => (
                format!(
                    "✗ taken: {}",
                    holders
                        .iter()
                        .map(|h| format!(
                            "{} by {} {}",
                            text::sanitize(&h.resource_name),
                            text::sanitize(&h.user.display_name),
                            ctx.period_text(&h.period)
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                style(
                    ctx,
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ),
            Preview::Blocked(blocks) => (
                format!(
                    "✗ blocked: {}",
                    blocks
                        .iter()
                        .map(|b| format!(
                            "{} {} · {}",
                            text::sanitize(&b.resource_name),
                            ctx.period_text(&b.period),
                            text::sanitize(&b.reason)
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                style(
                    ctx,
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ),
            Preview::Refused(r) => (
                format!("✗ lab policy {}: {}", r.rule, r.brief(|t| ctx.time_text(t))),
                style(
                    ctx,
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ),
            Preview::Found { gpus, period } => (
                format!(
                    "✓ {} {}{}",
                    gpus.join(", "),
                    ctx.period_text(period),
                    if fields_start(self, ctx) == Some(period.start) {
                        ""
                    } else {
                        " (the earliest they are all free)"
                    }
                ),
                style(
                    ctx,
                    Style::default()
                        .fg(Color::Green)
                        .add_modifier(Modifier::BOLD),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ),
            Preview::Invalid(why) => (
                format!("? {why}"),
                style(ctx, Style::default().fg(Color::Yellow), Style::default()),
            ),
        };
        lines.push(Line::from(Span::styled(format!(" {msg}"), st)));
        lines.push(Line::from(""));
        let hint = if self.form.focus == F_RESOURCES && self.editing.is_none() {
            " Tab/↑↓ field · Enter save · Esc cancel · GPUs: gpu0 gpu1 or any 2"
        } else {
            " Tab/↑↓ field · Enter save · Esc cancel · end: 14:00 or 2h, 1d"
        };
        lines.push(Line::from(Span::styled(
            hint,
            Style::default().add_modifier(Modifier::DIM),
        )));
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    }
}

impl Popup for BookingForm {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
