//! The coalescing window has closed: what to say, to whom, when, and with which voucher.
//! One step per rule of the policy, in the order they apply: the kind, the channels, the
//! daily cap, the new promise (and moderation's next update), the voucher tiers, the
//! notice, and its release (quiet hours hold an SMS).

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::state::brand_of;
use super::{drop_held_sms, Assessment, Decision, Engine, HeldSms, OrderState, Payload, Pending, PromiseChange, Status, Trigger};
use crate::calendar::{self, local_date};
use crate::domain::{Channel, EscalationWhy, Instant, Kind};
use crate::name::Name;
use crate::notice::Notice;
use crate::policy::Brand;
use crate::trace::{Silence, Step, Trace, What};

/// The promise a notice makes, and what it sets in motion.
struct Plan {
    previous: Option<Instant>,
    new: Option<Instant>,
    next_update_at: Option<Instant>,
    escalation: Option<EscalationWhy>,
    again: bool,
}

/// The voucher a notice names, and what a `compensation` event grants.
struct Voucher {
    named: Option<u32>,
    previous_named: Option<u32>,
    granted: Option<(u32, i64)>,
}

impl Engine<'_> {
    pub(super) fn flush(&self, state: &mut OrderState, now: Instant, out: &mut Vec<Decision>, trace: &mut Trace) {
        let Some(pending) = state.pending.take() else { return };
        let Some(brand) = brand_of(self.policy, &state.brand) else { return };
        let tz = brand.time_zone;
        let assessment = self.assess(state);
        let Some(kind) = self.choose_kind(state, pending.trigger, &assessment) else {
            trace.record(|| self.nothing_to_say(state, &pending, &assessment, now, tz));
            return;
        };
        let channels = self.channels(state, kind, &pending.cause, now, tz, trace);
        // When each channel may go out (an SMS waits out quiet hours).
        let release: Vec<Instant> = channels.iter().map(|(c, _)| self.release_time(*c, tz, now)).collect();
        let capped = kind != Kind::DeliveryFailed;
        if let Some(due) = self.over_daily_cap(state, capped, &release, tz, now) {
            trace.record(|| {
                let detail = format!(
                    "The order already had {} messages today; the notice waits and then tells the state of that moment.",
                    self.policy.max_notices_per_day
                );
                Step::silence(&state.order_id, now, tz, &pending.cause, Silence::DailyCap, detail).on(None, Some(due))
            });
            state.pending = Some(Pending { due, ..pending });
            return;
        }
        let Some(plan) = self.plan_promise(state, kind, &assessment, tz, now) else { return };
        self.move_promise(state, kind, &assessment, &plan, now);
        if let Some(next) = plan.next_update_at {
            trace.record(|| {
                let detail = format!(
                    "No date yet: the next update comes {} ({} updates without news so far).",
                    next.with_timezone(&tz).format("%A %-d %B %H:%M"),
                    state.quiet_updates
                );
                Step::silence(&state.order_id, now, tz, &pending.cause, Silence::Cadence, detail).on(None, Some(next))
            });
        }
        let voucher = self.voucher(state, brand, kind, plan.new, tz);
        if state.customer_caused && plan.new.is_some_and(|n| n > state.original) {
            trace.record(|| {
                let detail = "The customer caused the delay (not home, address): no delay message and no voucher.".to_string();
                Step::silence(&state.order_id, now, tz, &pending.cause, Silence::CustomerCaused, detail)
            });
        }
        let notice = notice(state, kind, &plan, &voucher, now);
        trace.record(|| Step {
            order_id: Some(state.order_id.clone()),
            at: now,
            tz,
            cause: pending.cause.clone(),
            what: What::Decision {
                kind,
                channels: channels.iter().map(|(c, _)| *c).collect(),
                promise: PromiseChange { original: state.original, previous: plan.previous, new: plan.new },
            },
            detail: format!("Decided a {kind} notice."),
        });
        self.release(state, notice, &plan, &voucher, &channels, &release, capped, &pending.cause, now, tz, out, trace);
    }

    /// The kind of message the latest state calls for, if any.
    fn choose_kind(&self, state: &OrderState, trigger: Trigger, assessment: &Assessment) -> Option<Kind> {
        let open = matches!(state.status, Status::Open | Status::Shipped);
        match trigger {
            Trigger::DeliveryFailed if open => Some(Kind::DeliveryFailed),
            Trigger::Followup if state.status == Status::Delivered => Some(Kind::LateDeliveryFollowup),
            Trigger::UpdateDue if open && (state.promise.is_none() || state.told == Some(Kind::AtRisk)) => {
                match assessment {
                    Assessment::NewDate(_) => Some(Kind::Update),
                    Assessment::Breaks(_) if !state.customer_caused => Some(Kind::Delayed),
                    _ => Some(Kind::Update),
                }
            }
            Trigger::DeliveryFailed | Trigger::Followup | Trigger::UpdateDue => None,
            trigger if open => match assessment {
                Assessment::Breaks(_) if state.customer_caused => None,
                Assessment::Breaks(_) if trigger == Trigger::Backorder => Some(Kind::Backorder),
                Assessment::Breaks(_) => Some(Kind::Delayed),
                Assessment::NewDate(_) if trigger == Trigger::Backorder => Some(Kind::Backorder),
                Assessment::NewDate(_) => Some(Kind::Update),
                Assessment::StillUnknown if trigger == Trigger::Backorder && state.told != Some(Kind::Backorder) => {
                    Some(Kind::Backorder)
                }
                Assessment::StillUnknown => None,
                Assessment::Holds => {
                    if state.told == Some(Kind::AtRisk) && state.status == Status::Shipped {
                        Some(Kind::BackOnTrack)
                    } else if trigger == Trigger::ShipByPassed && state.status == Status::Open && state.told.is_none() {
                        Some(Kind::AtRisk)
                    } else {
                        None
                    }
                }
            },
            _ => None,
        }
    }

    /// Why a pending notice ends in silence.
    fn nothing_to_say(&self, state: &OrderState, pending: &Pending, assessment: &Assessment, now: Instant, tz: Tz) -> Step {
        if matches!(assessment, Assessment::Breaks(_)) && state.customer_caused {
            let detail = "The customer caused the delay (not home, address): no delay message, no voucher.".to_string();
            return Step::silence(&state.order_id, now, tz, &pending.cause, Silence::CustomerCaused, detail);
        }
        self.why_quiet(state, assessment, &pending.cause, now, tz)
    }

    /// The channels this notice goes out on: configured for the kind, consented to, with an
    /// address to send to. The others are silences in the trace.
    fn channels(&self, state: &OrderState, kind: Kind, cause: &str, now: Instant, tz: Tz, trace: &mut Trace) -> Vec<(Channel, String)> {
        let mut chosen = Vec::new();
        for &c in self.policy.channels_for(kind) {
            if !state.customer.channels.contains(&c) {
                trace.record(|| {
                    Step::silence(&state.order_id, now, tz, cause, Silence::NoConsent, format!("The customer did not consent to {c}."))
                        .on(Some(c), None)
                });
                continue;
            }
            let to = match c {
                Channel::Email => state.customer.email.as_ref(),
                Channel::Sms => state.customer.phone.as_ref(),
                Channel::Event => None,
            };
            match to {
                Some(to) => chosen.push((c, to.to_string())),
                None => trace.record(|| {
                    Step::silence(&state.order_id, now, tz, cause, Silence::NoAddress, format!("No address for {c}."))
                        .on(Some(c), None)
                }),
            }
        }
        chosen
    }

    fn release_time(&self, channel: Channel, tz: Tz, now: Instant) -> Instant {
        match channel {
            Channel::Sms => calendar::after_quiet_hours(self.policy, tz, now),
            _ => now,
        }
    }

    /// The daily cap: a notice beyond it waits for the next morning (when it is due then).
    /// Every local day the notice reaches the customer counts (an e-mail tonight and the
    /// SMS held to tomorrow morning are a message on both days). A failed delivery is never
    /// held back.
    fn over_daily_cap(&self, state: &OrderState, capped: bool, release: &[Instant], tz: Tz, now: Instant) -> Option<Instant> {
        if !capped || release.is_empty() {
            return None;
        }
        let full = notice_days(release, tz).iter().any(|d| notices_on(state, *d) >= self.policy.max_notices_per_day);
        if !full {
            return None;
        }
        let send_day = first_day(release, tz, now);
        let next_day = send_day.succ_opt().unwrap_or(send_day);
        Some(calendar::local_at(tz, next_day, self.policy.cap_release_time))
    }

    /// The promise this notice makes, the next update where it cannot make one (further
    /// apart with each update without news), slips and escalations.
    fn plan_promise(&self, state: &mut OrderState, kind: Kind, assessment: &Assessment, tz: Tz, now: Instant) -> Option<Plan> {
        let previous = state.promise;
        let mut plan = Plan { previous, new: previous, next_update_at: None, escalation: None, again: false };
        // Moderation counts the updates without news in a row; any other notice is news
        // told (a date, a shipment, a delay, a failed delivery), and the count starts again.
        // Only told news counts: a fact the customer never heard of must not bring the
        // updates closer together again.
        let no_news = kind == Kind::Update && !matches!(assessment, Assessment::NewDate(_) | Assessment::Breaks(Some(_)));
        state.quiet_updates = if no_news { state.quiet_updates + 1 } else { 0 };
        match kind {
            Kind::Delayed | Kind::Backorder | Kind::Update => {
                let date = match assessment {
                    Assessment::Breaks(d) => *d,
                    Assessment::NewDate(d) => Some(*d),
                    _ => None,
                };
                let breaks = matches!(assessment, Assessment::Breaks(_));
                if breaks {
                    state.slips += 1;
                }
                plan.again = breaks && state.slips >= 2;
                plan.new = date;
                if date.is_none() {
                    plan.next_update_at = Some(self.next_update(state, tz, now));
                }
                if plan.again {
                    plan.escalation = Some(EscalationWhy::RepeatedSlip);
                } else if breaks && date.is_none() {
                    plan.escalation = Some(EscalationWhy::NoEstimate);
                } else if no_news && self.policy.no_news_escalate_after > 0 && state.quiet_updates == self.policy.no_news_escalate_after {
                    plan.escalation = Some(EscalationWhy::NoNews);
                }
            }
            Kind::AtRisk => {
                plan.new = None;
                plan.next_update_at = Some(self.next_update(state, tz, now));
            }
            Kind::DeliveryFailed => {
                plan.new = state.next_attempt_at.map(|t| calendar::promise_on(self.policy, tz, local_date(tz, t)));
                // No next attempt and not the customer's doing: say when we write again.
                // (Not home with a pickup point: the customer can act; no update promised.)
                if plan.new.is_none() && !state.customer_caused {
                    plan.next_update_at = Some(self.next_update(state, tz, now));
                }
                if state.failed_deliveries >= 2 {
                    plan.escalation = Some(EscalationWhy::PermanentDeliveryFailure);
                }
            }
            Kind::BackOnTrack | Kind::LateDeliveryFollowup => {}
            Kind::Escalation | Kind::Compensation => return None,
        }
        Some(plan)
    }

    /// Moderation: the next promised update, further apart after each update without news
    /// (1, 2, 4, then every 7 days by default), always at `next_update_time`.
    fn next_update(&self, state: &OrderState, tz: Tz, now: Instant) -> Instant {
        let days = self.policy.update_step_days(state.quiet_updates);
        calendar::days_later_at(tz, now, days, self.policy.next_update_time)
    }

    /// Move the promise the customer holds, and its timers.
    fn move_promise(&self, state: &mut OrderState, kind: Kind, assessment: &Assessment, plan: &Plan, now: Instant) {
        match kind {
            Kind::AtRisk | Kind::LateDeliveryFollowup | Kind::BackOnTrack => {}
            Kind::DeliveryFailed => {
                if plan.new.is_some() || plan.next_update_at.is_some() {
                    state.promise = plan.new;
                }
            }
            // An update while the promise still nominally holds (after "at risk") leaves it.
            Kind::Update if matches!(assessment, Assessment::Holds) => {}
            _ => state.promise = plan.new,
        }
        if kind != Kind::LateDeliveryFollowup {
            state.timers.next_update = plan.next_update_at;
            state.timers.promise_passed = state.promise.filter(|p| *p > now && !state.customer_caused);
        }
        state.timers.ship_by = None;
        state.told = Some(kind);
    }

    /// Vouchers: the tier of the worst delay, in whole days from the original promise;
    /// when it rises a `compensation` event grants the difference.
    fn voucher(&self, state: &mut OrderState, brand: &Brand, kind: Kind, new: Option<Instant>, tz: Tz) -> Voucher {
        let previous = state.compensation_eur;
        let mut granted = None;
        let moved = matches!(kind, Kind::Delayed | Kind::Backorder | Kind::Update | Kind::DeliveryFailed);
        if let (true, false, Some(new_promise)) = (moved, state.customer_caused, new) {
            let days = calendar::days_between(tz, state.original, new_promise);
            let tier = brand.compensation_for(days);
            if tier > state.compensation_eur {
                granted = Some((tier - state.compensation_eur, days));
                state.compensation_eur = tier;
            }
        }
        Voucher {
            named: (state.compensation_eur > 0 && !state.customer_caused).then_some(state.compensation_eur),
            previous_named: (granted.is_some() && previous > 0).then_some(previous),
            granted,
        }
    }

    /// The decisions of one notice: each channel now or, for an SMS in quiet hours, held
    /// until the morning (replacing one still waiting); then its events.
    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        state: &mut OrderState,
        notice: Notice,
        plan: &Plan,
        voucher: &Voucher,
        channels: &[(Channel, String)],
        release: &[Instant],
        capped: bool,
        cause: &str,
        now: Instant,
        tz: Tz,
        out: &mut Vec<Decision>,
        trace: &mut Trace,
    ) {
        let kind = notice.kind;
        state.notices_decided += 1;
        let seq = state.notices_decided;
        let promise = PromiseChange { original: state.original, previous: plan.previous, new: plan.new };
        let (order_id, brand_id, locale) = (state.order_id.to_string(), state.brand.to_string(), state.locale.to_string());
        let reason = notice.reason;
        let notice = Box::new(notice);
        let header = |kind: Kind, channel: Channel, to: Option<String>, compensation_eur: Option<u32>| Decision {
            order_id: order_id.clone(),
            kind,
            channel,
            send_at: now,
            to,
            brand: brand_id.clone(),
            locale: locale.clone(),
            reason,
            promise,
            next_update_at: plan.next_update_at,
            compensation_eur,
            cause: cause.to_string(),
            seq,
            payload: Payload::Customer { notice: notice.clone() },
        };

        // Whatever still waits for the morning is superseded by this newer notice.
        if state.held_sms.is_some() {
            trace.record(|| {
                Step::silence(&state.order_id, now, tz, cause, Silence::Superseded, "The SMS held for the morning is replaced by this newer notice.".into())
                    .on(Some(Channel::Sms), None)
            });
        }
        drop_held_sms(state);
        let send_day = first_day(release, tz, now);
        for ((channel, to), &send_at) in channels.iter().zip(release) {
            let mut d = header(kind, *channel, Some(to.clone()), voucher.named);
            d.send_at = send_at;
            if send_at > now {
                trace.record(|| {
                    let detail = format!(
                        "SMS held until {} (quiet hours {}-{}).",
                        send_at.with_timezone(&tz).format("%H:%M"),
                        self.policy.quiet_from.format("%H:%M"),
                        self.policy.quiet_until.format("%H:%M")
                    );
                    Step::silence(&state.order_id, now, tz, cause, Silence::QuietHours, detail).on(Some(*channel), Some(send_at))
                });
                let day = local_date(tz, send_at);
                let counted_day = (capped && day != send_day).then_some(day);
                state.held_sms = Some(Box::new(HeldSms { release_at: send_at, decision: d, counted_day }));
            } else {
                trace.record(|| message_step(&d, tz, "Released to the channel."));
                out.push(d);
            }
        }
        if !channels.is_empty() {
            state.notices_sent += 1;
            if capped {
                for day in notice_days(release, tz) {
                    count_notice(state, day);
                }
            }
        }
        if let Some((amount, days)) = voucher.granted {
            let mut d = header(Kind::Compensation, Channel::Event, None, Some(amount));
            d.payload = Payload::Compensation { amount_eur: amount, delay_days: days };
            trace.record(|| message_step(&d, tz, &format!("The delay tier rose: a voucher of {amount} euro more.")));
            out.push(d);
        }
        if let Some(why) = plan.escalation {
            let mut d = header(Kind::Escalation, Channel::Event, None, None);
            d.payload = Payload::Escalation { why, messages_sent: state.notices_sent };
            trace.record(|| message_step(&d, tz, &format!("A person is asked to look at the order ({}).", why.as_str())));
            out.push(d);
        }
    }
}

/// What a customer notice says, as facts.
fn notice(state: &OrderState, kind: Kind, plan: &Plan, voucher: &Voucher, now: Instant) -> Notice {
    Notice {
        order_id: state.order_id.to_string(),
        kind,
        brand: state.brand.to_string(),
        locale: state.locale.to_string(),
        lang: state.lang,
        customer_name: state.customer.name.clone(),
        items: state.items.clone(),
        promise_label: state.promise_label.clone(),
        carrier: Some(state.carrier.as_ref().unwrap_or(&state.shipping.carrier).to_string()),
        tracking_number: state.tracking_number.as_deref().map(str::to_string),
        reason: match kind {
            Kind::AtRisk | Kind::BackOnTrack => None,
            _ => state.reason,
        },
        again: plan.again,
        original: state.original,
        previous: plan.previous,
        new: plan.new,
        next_update_at: plan.next_update_at,
        compensation_eur: voucher.named,
        previous_compensation_eur: voucher.previous_named,
        next_attempt_at: state.next_attempt_at.filter(|_| kind == Kind::DeliveryFailed),
        pickup_point: state.pickup_point.as_deref().cloned().filter(|_| kind == Kind::DeliveryFailed),
        delivered_at: state.delivered_at,
        failed_attempts: state.failed_deliveries,
        decided_at: now,
    }
}

/// The trace step of a decision released to its channel.
pub(super) fn message_step(d: &Decision, tz: Tz, detail: &str) -> Step {
    Step {
        order_id: Some(Name::new(&d.order_id)),
        at: d.send_at,
        tz,
        cause: d.cause.clone(),
        what: What::Message { kind: d.kind, channel: d.channel, send_at: d.send_at },
        detail: detail.to_string(),
    }
}

/// The local day the notice first reaches the customer.
fn first_day(release: &[Instant], tz: Tz, now: Instant) -> NaiveDate {
    local_date(tz, release.iter().copied().min().unwrap_or(now))
}

/// Every local day one of the notice's channels reaches the customer.
fn notice_days(release: &[Instant], tz: Tz) -> Vec<NaiveDate> {
    let mut days: Vec<NaiveDate> = release.iter().map(|t| local_date(tz, *t)).collect();
    days.sort_unstable();
    days.dedup();
    days
}

fn notices_on(state: &OrderState, day: NaiveDate) -> u32 {
    state.notices_by_day.iter().find(|(d, _)| *d == day).map(|(_, n)| *n).unwrap_or(0)
}

fn count_notice(state: &mut OrderState, day: NaiveDate) {
    state.notices_by_day.retain(|(d, _)| (day - *d).num_days() < 2);
    match state.notices_by_day.iter_mut().find(|(d, _)| *d == day) {
        Some((_, n)) => *n += 1,
        None => state.notices_by_day.push((day, 1)),
    }
}
