//! A Postgres batch applied in memory. The writer reads and locks every row the batch's writes
//! touch ([`Rows`]), applies the writes one after another to that copy with the rules of
//! `spend` — the same checks in the same order, the same answers and refusals — and then
//! stores only the net change ([`Changes`]): each balance and key row once, however many of
//! the batch's requests touched it. The rows stay locked until the batch commits, so nothing
//! changes them between the read and the write; the database's `CHECK`s still guard every row.
use super::ops::{Announce, Done, Op, OwnedCharge, OwnedHold};
use crate::{
    entries::debit_id,
    rates,
    spend::{Reservation, Settlement},
    LedgerError, Result,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// A balance row (what the batch can change of it: `debited` and `reserved`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct BalanceRow {
    pub(super) credited: i64,
    pub(super) debited: i64,
    pub(super) reserved: i64,
}

impl BalanceRow {
    fn available(&self) -> i64 {
        self.credited - self.debited - self.reserved
    }
}

/// A delegated key's budget row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyRow {
    pub(super) user: String,
    pub(super) budget: i64,
    pub(super) spent: i64,
    pub(super) reserved: i64,
    pub(super) uses: i64,
    pub(super) max_uses: Option<i64>,
}

impl KeyRow {
    fn remaining(&self) -> i64 {
        self.budget - self.spent - self.reserved
    }
}

/// A reservation row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeldRow {
    pub(super) user: String,
    pub(super) amount: i64,
    pub(super) key_id: Option<String>,
    pub(super) created_at: i64,
    pub(super) expires_at: i64,
    pub(super) served_at: Option<i64>,
}

/// A caller's rate window: what it was held and settled in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct WindowRow {
    pub(super) requests: i64,
    pub(super) tokens: i64,
}

/// The rows a batch's writes touch, as read (and locked) before they are applied.
#[derive(Debug, Clone, Default)]
pub(super) struct Rows {
    pub(super) balances: BTreeMap<String, BalanceRow>,
    pub(super) keys: BTreeMap<String, KeyRow>,
    pub(super) reservations: BTreeMap<String, HeldRow>,
    /// Debit entry ids (`debit:<request>`) that exist.
    pub(super) debits: HashSet<String>,
    /// The batch's keys and sessions that their wallets revoked.
    pub(super) revoked: HashSet<String>,
    /// Rate windows by (caller, minute).
    pub(super) windows: BTreeMap<(String, i64), WindowRow>,
}

/// Which rows to read for a batch: the writes' reservation ids, keys, users and debit entries
/// (a release names only its reservation: its user and key are read through it).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Wanted {
    pub(super) reservations: Vec<String>,
    pub(super) keys: Vec<String>,
    pub(super) users: Vec<String>,
    pub(super) debits: Vec<String>,
    pub(super) sessions: Vec<String>,
    /// Rate windows, as (caller, minute).
    pub(super) windows: Vec<(String, i64)>,
}

impl Wanted {
    pub(super) fn of<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Self {
        let mut reservations = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut users = BTreeSet::new();
        let mut debits = BTreeSet::new();
        let mut sessions = BTreeSet::new();
        let mut windows = BTreeSet::new();
        for op in ops {
            match op {
                Op::Hold(hold) => {
                    reservations.insert(hold.id.clone());
                    users.insert(hold.user.clone());
                    if let Some((key_id, ..)) = &hold.key {
                        keys.insert(key_id.clone());
                    }
                    if let Some(session) = &hold.session {
                        sessions.insert(session.clone());
                    }
                    if let Some(rate) = &hold.rate {
                        windows.insert((rate.caller.clone(), rate.minute));
                    }
                }
                Op::Served { id, .. } | Op::Release(id) => {
                    reservations.insert(id.clone());
                }
                Op::Charge(charge, _) => {
                    reservations.insert(charge.id.clone());
                    users.insert(charge.user.clone());
                    if let Some(key_id) = &charge.key_id {
                        keys.insert(key_id.clone());
                    }
                    debits.insert(debit_id(&charge.id));
                    if let Some(window) = &charge.rate {
                        windows.insert(window.clone());
                    }
                }
            }
        }
        let sorted = |set: BTreeSet<String>| set.into_iter().collect();
        Self {
            reservations: sorted(reservations),
            keys: sorted(keys),
            users: sorted(users),
            debits: sorted(debits),
            sessions: sorted(sessions),
            windows: windows.into_iter().collect(),
        }
    }
}

/// A request's debit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Debit {
    pub(super) request_id: String,
    pub(super) user: String,
    pub(super) charged: i64,
    /// The signed debit event announcing it.
    pub(super) event_id: Option<String>,
}

/// A request's usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Usage {
    pub(super) request_id: String,
    pub(super) user: String,
    pub(super) key_id: Option<String>,
    pub(super) model: String,
    pub(super) prompt_tokens: i64,
    pub(super) completion_tokens: i64,
    pub(super) cost: i64,
}

/// What a key row's `spent`, `reserved` and `uses` change by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KeyDelta {
    pub(super) spent: i64,
    pub(super) reserved: i64,
    pub(super) uses: i64,
}

/// A batch's net change, to store in one statement; every list is sorted by its row's key.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    pub(super) deleted: Vec<String>,
    pub(super) added: Vec<(String, HeldRow)>,
    pub(super) served: Vec<(String, i64)>,
    /// Existing balance rows: what `debited` and `reserved` change by.
    pub(super) balances: Vec<(String, BalanceRow)>,
    pub(super) new_balances: Vec<(String, BalanceRow)>,
    pub(super) keys: Vec<(String, KeyDelta)>,
    pub(super) new_keys: Vec<(String, KeyRow)>,
    pub(super) debits: Vec<Debit>,
    pub(super) usage: Vec<Usage>,
    /// Signed events to queue: (dedupe key, JSON).
    pub(super) outbox: Vec<(String, String)>,
    /// Rate windows' new counts (their rows exist: the batch's read created them).
    pub(super) windows: Vec<((String, i64), WindowRow)>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A batch being applied to its rows.
pub(super) struct Plan {
    before: Rows,
    rows: Rows,
    now: i64,
    debits: Vec<Debit>,
    usage: Vec<Usage>,
    outbox: Vec<(String, String)>,
}

impl Plan {
    /// A batch on `rows`, at `now` (unix seconds: reservations' times, entries' and records').
    pub(super) fn new(rows: Rows, now: i64) -> Self {
        Self {
            before: rows.clone(),
            rows,
            now,
            debits: vec![],
            usage: vec![],
            outbox: vec![],
        }
    }

    /// Applies one write. A refusal changes nothing; any other error means the batch must not
    /// be stored.
    pub(super) fn apply(&mut self, op: &Op) -> Result<Done> {
        Ok(match op {
            Op::Hold(hold) => Done::Held(self.hold(hold)?),
            Op::Served { id, at } => Done::Served(self.served(id, *at)),
            Op::Charge(charge, announce) => Done::Charged(self.charge(charge, announce)),
            Op::Release(id) => Done::Released(self.release(id)),
        })
    }

    /// `spend::hold_in`: what is affordable (with a minimum), the key's budget, uses and
    /// revocation, then the balance; refused by either, nothing is held.
    fn hold(&mut self, hold: &OwnedHold) -> Result<Reservation> {
        if self.rows.reservations.contains_key(&hold.id)
            || self.before.reservations.contains_key(&hold.id)
        {
            return Err(LedgerError::DuplicateHold(hold.id.clone()));
        }
        if hold
            .session
            .as_ref()
            .is_some_and(|session| self.rows.revoked.contains(session))
        {
            return Err(LedgerError::SessionRevoked);
        }
        if let Some(rate) = &hold.rate {
            let window = self
                .rows
                .windows
                .get(&(rate.caller.clone(), rate.minute))
                .copied()
                .unwrap_or_default();
            rates::admit(&rate.borrowed(), window.requests, window.tokens)?;
        }
        let user = hold.user.as_str();
        let available = self.rows.balances.get(user).map(BalanceRow::available);
        let minimum = hold.minimum.unwrap_or(hold.amount).clamp(1, hold.amount);
        let mut amount = hold.amount;
        if minimum < amount {
            amount = amount.min(available.unwrap_or(0));
            if let Some((key_id, budget, _)) = &hold.key {
                let remaining = self.rows.keys.get(key_id).map(KeyRow::remaining);
                amount = amount.min(remaining.unwrap_or(*budget));
            }
            amount = amount.max(minimum);
        }
        if let Some((key_id, budget, max_uses)) = &hold.key {
            // The key's row is created on its first hold, even one that is refused.
            let row = self.rows.keys.entry(key_id.clone()).or_insert(KeyRow {
                user: user.to_owned(),
                budget: *budget,
                spent: 0,
                reserved: 0,
                uses: 0,
                max_uses: *max_uses,
            });
            let used_up = row.max_uses.is_some_and(|max| row.uses >= max);
            if self.rows.revoked.contains(key_id) {
                return Err(LedgerError::KeyRevoked);
            }
            if used_up {
                return Err(LedgerError::KeyUsedUp);
            }
            if row.user != user || row.remaining() < amount {
                return Err(LedgerError::KeyBudget {
                    needed: amount,
                    remaining: row.remaining(),
                });
            }
        }
        let Some(balance) = self
            .rows
            .balances
            .get_mut(user)
            .filter(|balance| balance.available() >= amount)
        else {
            return Err(LedgerError::Insufficient {
                needed: amount,
                available: available.unwrap_or(0),
            });
        };
        balance.reserved += amount;
        if let Some(row) = hold
            .key
            .as_ref()
            .and_then(|key| self.rows.keys.get_mut(&key.0))
        {
            row.reserved += amount;
            row.uses += 1;
        }
        if let Some(rate) = &hold.rate {
            let key = (rate.caller.clone(), rate.minute);
            self.rows.windows.entry(key).or_default().requests += 1;
        }
        let held = HeldRow {
            user: user.to_owned(),
            amount,
            key_id: hold.key.as_ref().map(|key| key.0.clone()),
            created_at: self.now,
            expires_at: self.now + hold.ttl_seconds,
            served_at: None,
        };
        self.rows.reservations.insert(hold.id.clone(), held.clone());
        Ok(Reservation {
            id: hold.id.clone(),
            user: held.user,
            amount,
            expires_at: held.expires_at,
            served_at: None,
        })
    }

    /// `spend::served_in`.
    fn served(&mut self, id: &str, at: i64) -> bool {
        match self.rows.reservations.get_mut(id) {
            Some(held) if held.served_at.is_none() => {
                held.served_at = Some(at);
                true
            }
            _ => false,
        }
    }

    /// `spend::charge_in`: the reservation goes, the cost is charged within what is available
    /// and the key's budget, with its debit entry, usage record and announcement.
    fn charge(&mut self, charge: &OwnedCharge, announce: &Announce) -> Settlement {
        let cost = charge.cost.max(0);
        let held = self
            .rows
            .reservations
            .remove(&charge.id)
            .map_or(0, |held| held.amount);
        let entry = debit_id(&charge.id);
        let key = charge.key_id.as_ref();
        if self.rows.debits.contains(&entry) {
            // Settled before: only give back what this reservation (if any) still held.
            if let Some(row) = key.and_then(|key_id| self.rows.keys.get_mut(key_id)) {
                row.reserved -= held;
            }
            if let Some(balance) = self.rows.balances.get_mut(&charge.user) {
                balance.reserved -= held;
            }
            return Settlement {
                charged: 0,
                shortfall: 0,
                newly_settled: false,
            };
        }
        self.rows.debits.insert(entry);
        let key_remaining = key
            .and_then(|key_id| self.rows.keys.get_mut(key_id))
            .map(|row| {
                row.reserved -= held;
                row.remaining()
            });
        let balance = self.rows.balances.entry(charge.user.clone()).or_default();
        balance.reserved -= held;
        let charged = cost
            .min(balance.available().max(0))
            .min(key_remaining.map_or(i64::MAX, |remaining| remaining.max(0)));
        balance.debited += charged;
        if let (Some(row), Some(_)) = (key.and_then(|k| self.rows.keys.get_mut(k)), key_remaining) {
            row.spent += charged;
        }
        let announcement = announce(charged);
        self.debits.push(Debit {
            request_id: charge.id.clone(),
            user: charge.user.clone(),
            charged,
            event_id: announcement.as_ref().map(|a| a.event_id.clone()),
        });
        if let (Some(usage), Some(window)) = (&charge.usage, &charge.rate) {
            let tokens = usage.prompt_tokens + usage.completion_tokens;
            if tokens > 0 {
                self.rows.windows.entry(window.clone()).or_default().tokens += tokens;
            }
        }
        if let Some(usage) = &charge.usage {
            self.usage.push(Usage {
                request_id: charge.id.clone(),
                user: charge.user.clone(),
                key_id: charge.key_id.clone(),
                model: usage.model.clone(),
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                cost: charged,
            });
        }
        if let Some(announcement) = announcement {
            self.outbox
                .push((announcement.dedupe_key, announcement.event_json));
        }
        Settlement {
            charged,
            shortfall: cost - charged,
            newly_settled: true,
        }
    }

    /// `spend::release_in`.
    fn release(&mut self, id: &str) -> bool {
        let Some(held) = self.rows.reservations.remove(id) else {
            return false;
        };
        if let Some(row) = held
            .key_id
            .and_then(|key_id| self.rows.keys.get_mut(&key_id))
        {
            row.reserved -= held.amount;
        }
        if let Some(balance) = self.rows.balances.get_mut(&held.user) {
            balance.reserved -= held.amount;
        }
        true
    }

    /// What the batch changed, row by row.
    pub(super) fn changes(self) -> Changes {
        let Self {
            before,
            rows,
            debits,
            usage,
            outbox,
            ..
        } = self;
        let mut changes = Changes {
            debits,
            usage,
            outbox,
            ..Changes::default()
        };
        for (id, held) in &before.reservations {
            match rows.reservations.get(id) {
                None => changes.deleted.push(id.clone()),
                Some(now) if now.served_at != held.served_at => {
                    if let Some(at) = now.served_at {
                        changes.served.push((id.clone(), at));
                    }
                }
                Some(_) => {}
            }
        }
        for (id, held) in rows.reservations {
            if !before.reservations.contains_key(&id) {
                changes.added.push((id, held));
            }
        }
        for (user, now) in rows.balances {
            match before.balances.get(&user) {
                None => changes.new_balances.push((user, now)),
                Some(was) if *was != now => {
                    let delta = BalanceRow {
                        credited: 0,
                        debited: now.debited - was.debited,
                        reserved: now.reserved - was.reserved,
                    };
                    changes.balances.push((user, delta));
                }
                Some(_) => {}
            }
        }
        for (key_id, now) in rows.keys {
            match before.keys.get(&key_id) {
                None => changes.new_keys.push((key_id, now)),
                Some(was) if *was != now => {
                    let delta = KeyDelta {
                        spent: now.spent - was.spent,
                        reserved: now.reserved - was.reserved,
                        uses: now.uses - was.uses,
                    };
                    changes.keys.push((key_id, delta));
                }
                Some(_) => {}
            }
        }
        for (window, now) in rows.windows {
            if before.windows.get(&window) != Some(&now) {
                changes.windows.push((window, now));
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests;
