//! Session binding (`auth_jwt.require_session`): a token passes only while the Better Auth session
//! it names is live in `auth_jwt.session_table`, so sign-out, revocation and bans take effect in
//! the database at the next transaction instead of at the token's `exp`.
//!
//! Cost. A live session is kept between transactions (`LIVE`), like the keys: the session table
//! carries a trigger (`auth_jwt.on_session_change()`, attached by `watch_session_table()`, see
//! `key_watch::SESSIONS`) that tells every backend to forget a session when a change can end it:
//! a DELETE (sign-out, revocation, ban), an UPDATE that moves its end earlier or gives it another
//! user or id. The message is a relcache invalidation of the number `session_marker` gives the
//! session's id (`announce_end`, `xact::send_marker`), so each backend drops that session only;
//! past `MARKERS_PER_TRANSACTION` in one transaction, the relation's own invalidation drops them
//! all, as TRUNCATE and DDL do by themselves. A sign-in's INSERT
//! and Better Auth's refresh (a later `"expiresAt"`) invalidate nothing: a kept session that a
//! refresh extended ends sooner in the cache, and is looked up again when that end has passed.
//! `"expiresAt"` is compared with the clock at every use. Only live sessions are kept; an id that
//! names none is looked up again each time. A transaction's first check of a kept session costs
//! a hash probe and the clock; a lookup is an index probe through a plan prepared once per backend
//! and kept (the plan cache replans it by itself when the relation changes). Each answer is also
//! remembered for the rest of the transaction. The per-row path does not come here at all: the
//! request memo in `functions` already holds a token that passed in this transaction.
//!
//! Freshness, as for the keys (see `key_table`): kept sessions are valid while the invalidation
//! count is what it was before the lookups that found them, which read the latest committed state
//! (`Snapshot::latest`), not the transaction's snapshot; invalidations already sent are taken in
//! before a kept session is used, so a REPEATABLE READ transaction that began before a sign-out
//! committed sees the sign-out at its first check. A lookup that fails part-way keeps nothing;
//! one that read this transaction's own uncommitted rows is dropped if the transaction (or a
//! savepoint) rolls back or is prepared. Nothing is written, so this works on a hot standby (which
//! replays the invalidation with the sign-out) and in parallel workers. Where the session
//! relation is not watched (a view, no trigger, a trigger not ENABLE ALWAYS), nothing is kept
//! between transactions, and a WARNING says why and how to fix it.
//!
//! The lookup is by `id` alone, as the relation's owner with pinned settings (see `relation`):
//! the caller needs no privilege on the table, and the session's `token` column, a bearer
//! credential, is never read, so a token carrying some session's `token` as its `sid` finds
//! nothing.

use crate::errors;
use crate::key_watch;
use crate::relation::{self, Locked, Name, Relation, SESSION_TABLE};
use crate::settings;
use crate::snapshot_query::{Moved, Plan, Snapshot};
use crate::stats;
use crate::token_cache::VerifiedToken;
use crate::xact::{self, Stamp, Watched};
use auth_jwt_core::{check_session, session_id, sub_claim, Error, Object, Session, SessionRow};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Sessions remembered per transaction; a transaction that verifies more distinct sessions than
/// this (jwt_verify over a table of tokens) starts over, looking them up again.
const CAPACITY: usize = 1024;

/// Live sessions kept per backend between transactions; when full, it starts over.
const LIVE_CAPACITY: usize = 16_384;

/// How a session id from a token is compared with the `id` column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdType {
    Text,
    Uuid,
    Integer,
}

impl IdType {
    fn of(type_name: &str) -> Option<IdType> {
        match type_name {
            "text" => Some(IdType::Text),
            t if t.starts_with("character varying") => Some(IdType::Text),
            "uuid" => Some(IdType::Uuid),
            "smallint" | "integer" | "bigint" => Some(IdType::Integer),
            _ => None,
        }
    }

    fn param(self) -> pg_sys::Oid {
        match self {
            IdType::Text => pg_sys::TEXTOID,
            IdType::Uuid => pg_sys::UUIDOID,
            IdType::Integer => pg_sys::INT8OID,
        }
    }
}

/// The session relation as resolved, and the kept plan that looks a session up in it.
struct Prepared {
    /// The `auth_jwt.session_table` value it was prepared for.
    table: String,
    /// The relation the setting named when it was prepared (on Citus, the lookup reads its
    /// placement on this node), and how messages name what it reads.
    oid: pg_sys::Oid,
    shown: String,
    owner: pg_sys::Oid,
    id: IdType,
    plan: Plan,
    /// `xact::invalidations(SessionTable)` read before resolving.
    seen: u64,
    /// Why a change that can end a session may reach no backend as an invalidation; None: the
    /// relation is watched, and live sessions may be kept between transactions.
    unwatched: Option<String>,
}

/// Live sessions found by lookups, kept between transactions (see the module's doc).
struct Live {
    /// The `auth_jwt.session_table` value they were read from.
    table: String,
    /// `xact::invalidations(SessionTable)` read before each of the lookups that found them.
    seen: u64,
    /// By `session_marker` of their id (the key a sign-out's invalidation names), then by id.
    sessions: FxHashMap<u32, Vec<(String, Session)>>,
    len: usize,
}

/// The sessions looked up in this transaction (see `xact::Stamp`), by id.
struct SessionAnswers {
    stamp: Stamp,
    found: FxHashMap<String, Option<Session>>,
}

thread_local! {
    static PREPARED: RefCell<Option<Prepared>> = const { RefCell::new(None) };
    static ANSWERS: RefCell<Option<SessionAnswers>> = const { RefCell::new(None) };
    static LIVE: RefCell<Option<Live>> = const { RefCell::new(None) };
    /// An invalidation arrived while `LIVE` was borrowed: drop it all at its next use.
    static LIVE_STALE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Per-session invalidations this transaction has sent (local xid, count).
    static MARKERS_SENT: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
    /// The reason last warned about, so the WARNING appears once per backend and cause.
    static WARNED: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The session table's name, parsed, for the setting value it was parsed from.
    static NAME: RefCell<Option<(String, Name)>> = const { RefCell::new(None) };
}

/// Wall-clock Unix seconds with their fraction: a session's `"expiresAt"` is compared exactly.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Refuse the verified token unless sessions are not required or the session it names is live
/// (raises 28000 with the reason).
pub fn check(token: &VerifiedToken) {
    if !settings::require_session() {
        return;
    }
    let sid = token.sid().unwrap_or_else(|e| errors::rejected(&e.error(settings::session_claim())));
    let remembered = ANSWERS.with(|a| {
        let a = a.borrow();
        let a = a.as_ref().filter(|a| a.stamp.is_current())?;
        a.found.get(sid).map(|s| check_session(token.sub(), s.as_ref(), now()))
    });
    let verdict = remembered.unwrap_or_else(|| {
        let now = now();
        let found = kept(sid, now).map_or_else(|| lookup_and_keep(sid, now), Some);
        let verdict = check_session(token.sub(), found.as_ref(), now);
        remember(sid, found);
        verdict
    });
    if let Err(e) = verdict {
        errors::rejected(&e);
    }
}

fn remember(sid: &str, found: Option<Session>) {
    ANSWERS.with(|a| {
        let mut a = a.borrow_mut();
        let stamp = Stamp::now();
        let answers = match a.as_mut() {
            Some(answers) if answers.stamp == stamp => answers,
            _ => a.insert(SessionAnswers { stamp, found: FxHashMap::default() }),
        };
        if answers.found.len() >= CAPACITY {
            answers.found.clear();
        }
        answers.found.insert(sid.to_owned(), found);
    })
}

/// For jwt_explain: whether the session the verified `claims` name is live, and why, looked up
/// afresh (not from this transaction's memo).
pub fn explain(claims: Object<'_>) -> Result<String, Error> {
    let claim = settings::session_claim();
    let sid = session_id(claims, claim).map_err(|e| e.error(claim))?;
    let found = lookup(sid);
    check_session(sub_claim(claims), found.as_ref(), now())?;
    let until = found.and_then(|s| s.expires_at).map_or(String::new(), |at| {
        format!(" until {}", auth_jwt_core::error::iso8601(at.clamp(-1e15, 1e15).floor() as i64))
    });
    Ok(format!("the session is live{until} and belongs to the token's sub"))
}

/// The live session `sid` kept from an earlier transaction, if nothing that can end a session has
/// been invalidated since it was read and it has not ended by `now`. No SPI, no lock.
fn kept(sid: &str, now: f64) -> Option<Session> {
    // Take in the invalidations already sent (a transaction that began before a sign-out, or one
    // that holds every lock it needs). Nothing to do is one unlocked read.
    xact::accept_invalidations();
    if LIVE_STALE.with(|s| s.replace(false)) {
        LIVE.with(|l| *l.borrow_mut() = None);
    }
    let n = xact::invalidations(Watched::SessionTable);
    let table = settings::session_table();
    let marker = auth_jwt_core::session_marker(sid.as_bytes());
    LIVE.with(|l| {
        let l = l.borrow();
        let l = l.as_ref().filter(|l| l.seen == n && l.table == table)?;
        let (_, s) = l.sessions.get(&marker)?.iter().find(|(id, _)| id == sid)?;
        s.expires_at.is_some_and(|at| now < at).then(|| s.clone())
    })
}

/// A relcache invalidation arrived (`xact::on_marker`): if it names kept sessions by their
/// marker (`announce_end`), they go. Never raises.
fn forget(relid: pg_sys::Oid) {
    let marker = u32::from(relid);
    let forgotten = LIVE.with(|l| match l.try_borrow_mut() {
        Ok(mut l) => {
            if let Some(live) = l.as_mut() {
                if let Some(gone) = live.sessions.remove(&marker) {
                    live.len -= gone.len();
                }
            }
            true
        }
        Err(_) => false,
    });
    if !forgotten {
        LIVE_STALE.with(|s| s.set(true));
    }
}

/// At most this many sessions ended by one transaction are announced one by one; past that (a
/// bulk revocation) every backend drops what it keeps, with one invalidation of the relation.
const MARKERS_PER_TRANSACTION: u32 = 64;

/// For the session table's trigger: a row change that can end the session `old` holds (a DELETE,
/// or an UPDATE that `update_can_end_session` says can): every backend forgets it when this
/// transaction commits (`xact::send_marker` with its id's `session_marker`), and only it. Without
/// an id to name it by, or past `MARKERS_PER_TRANSACTION`, the whole relation is invalidated.
///
/// # Safety
/// `td` is the TriggerData of a row-level trigger call; `old` its old tuple.
pub unsafe fn announce_end(td: *mut pg_sys::TriggerData, old: pg_sys::HeapTuple) {
    // SAFETY: as the caller guarantees; SPI_getvalue returns NULL or a palloc'd string.
    unsafe {
        let rel = (*(*td).tg_relation).rd_id;
        let desc = (*(*td).tg_relation).rd_att;
        let col = pg_sys::SPI_fnumber(desc, c"id".as_ptr());
        let id = if col > 0 { pg_sys::SPI_getvalue(old, desc, col) } else { std::ptr::null_mut() };
        let lxid = xact::local_xid();
        let (sent_in, n) = MARKERS_SENT.with(std::cell::Cell::get);
        let n = if sent_in == lxid { n } else { 0 };
        MARKERS_SENT.with(|m| m.set((lxid, n.saturating_add(1))));
        if id.is_null() || n >= MARKERS_PER_TRANSACTION {
            // For every such row (inval.c keeps one message per (sub)transaction): one sent in a
            // savepoint that rolls back is gone with it.
            pg_sys::CacheInvalidateRelcacheByRelid(rel);
            return;
        }
        xact::send_marker(rel, auth_jwt_core::session_marker(std::ffi::CStr::from_ptr(id).to_bytes()));
    }
}

/// Receive the per-session invalidations (from `_PG_init`).
pub fn init() {
    xact::on_marker(forget);
}

/// Look `sid` up, and keep the session if it is live, the relation is watched, and no
/// invalidation arrived since the count read before the lookup's snapshot.
fn lookup_and_keep(sid: &str, now: f64) -> Option<Session> {
    let (found, seen) = lookup_counted(sid);
    let live = found.as_ref().filter(|s| s.user_id.is_some() && s.expires_at.is_some_and(|at| now < at));
    if let (Some(session), Some(seen)) = (live, seen) {
        if seen == xact::invalidations(Watched::SessionTable) {
            let table = settings::session_table();
            LIVE.with(|l| {
                let mut l = l.borrow_mut();
                let live = match l.as_mut() {
                    Some(live) if live.seen == seen && live.table == table => live,
                    _ => l.insert(Live { table: table.to_owned(), seen, sessions: FxHashMap::default(), len: 0 }),
                };
                if live.len >= LIVE_CAPACITY {
                    live.sessions.clear();
                    live.len = 0;
                }
                let same = live.sessions.entry(auth_jwt_core::session_marker(sid.as_bytes())).or_default();
                let before = same.len();
                same.retain(|(id, _)| id != sid);
                live.len = live.len - (before - same.len()) + 1;
                same.push((sid.to_owned(), session.clone()));
            });
        }
    }
    found
}

/// The session with id `sid`, read under the latest snapshot; None if there is none.
fn lookup(sid: &str) -> Option<Session> {
    lookup_counted(sid).0
}

/// The session with id `sid`, and, if the relation is watched, `xact::invalidations(SessionTable)`
/// read before the snapshot the lookup read under.
fn lookup_counted(sid: &str) -> (Option<Session>, Option<u64>) {
    let table = settings::session_table();
    let _reading = xact::Reading::start(Watched::SessionTable);
    let found = relation::retrying(table, || lookup_once(table, sid));
    xact::note_read(Watched::SessionTable);
    found
}

fn lookup_once(table: &str, sid: &str) -> Result<(Option<Session>, Option<u64>), Moved> {
    // Locked first (see `relation`): until this transaction ends, the relation cannot be dropped,
    // replaced or given to another owner, and the kept plan runs only while its name means it.
    let locked = lock(table);
    prepare_if_stale(table, locked);
    PREPARED.with(|p| {
        let p = p.borrow();
        let p = p.as_ref().expect("prepared above"); // ok: prepare_if_stale stores it or raises
        let arg: DatumWithOid = match p.id {
            IdType::Text => sid.into(),
            // A session id that is not a canonical value of the column's type names no session.
            IdType::Uuid => match canonical_uuid(sid) {
                Some(u) => pgrx::datum::Uuid::from_bytes(u).into(),
                None => return Ok((None, None)),
            },
            IdType::Integer => match sid.parse::<i64>() {
                Ok(n) if n.to_string() == sid => n.into(),
                _ => return Ok((None, None)),
            },
        };
        stats::session_lookup();
        // The count before the snapshot: every invalidation it includes is for a commit the
        // snapshot shows, and a later one moves it.
        let seen = p.unwatched.is_none().then(|| xact::invalidations(Watched::SessionTable));
        let snapshot = Snapshot::latest();
        let mut rows = relation::as_owner(p.owner, || {
            p.plan.select_from(
                || locked.still_named(),
                &snapshot,
                &[arg],
                |r| (Session { user_id: r.get(1), expires_at: r.get(2) }, r.get::<String>(3)),
            )
        })?;
        if rows.len() > 1 {
            errors::configured_relation(
                PgSqlErrorCode::ERRCODE_CARDINALITY_VIOLATION,
                format!("auth_jwt session table {} has more than one row with the same id", p.shown),
                "A token's session id must name one session.".into(),
                "Give the relation a unique id, as Better Auth's session table has (its primary key).",
            );
        }
        // Kept only under the id exactly as the row prints it, which is what a sign-out's
        // invalidation names (`announce_end`): not an upper-case uuid, not an id a
        // nondeterministic collation finds equal.
        let row = rows.pop();
        let seen = seen.filter(|_| row.as_ref().is_some_and(|(_, id)| id.as_deref() == Some(sid)));
        Ok((row.map(|(session, _)| session), seen))
    })
}

/// The 16 bytes of a uuid written as PostgreSQL prints one (8-4-4-4-12 hexadecimal digits).
fn canonical_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let shape = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    shape.then(|| uuid::Uuid::try_parse(s).ok()).flatten().map(|u| *u.as_bytes())
}

/// Resolve and lock `auth_jwt.session_table` (its parsed name is kept per setting value).
fn lock(table: &str) -> Locked {
    let name = NAME.with(|n| n.borrow().as_ref().filter(|(t, _)| t == table).map(|(_, name)| name.clone()));
    let name = match name {
        Some(name) => name,
        None => {
            let name = relation::parse_name(table).unwrap_or_else(|e| SESSION_TABLE.unresolved(table, e));
            NAME.with(|n| *n.borrow_mut() = Some((table.to_owned(), name.clone())));
            name
        }
    };
    relation::lock(&name).unwrap_or_else(|e| SESSION_TABLE.unresolved(table, e))
}

/// Describe the locked session relation and prepare the lookup, unless what is kept was prepared
/// for the same relation and nothing has invalidated it since.
fn prepare_if_stale(table: &str, locked: Locked) {
    let n = xact::invalidations(Watched::SessionTable);
    let valid = |p: &Prepared| p.table == table && p.oid == locked.oid && p.seen == n;
    if PREPARED.with(|p| p.borrow().as_ref().is_some_and(valid)) {
        return;
    }
    if let Some(old) = PREPARED.with(|p| p.borrow_mut().take()) {
        old.plan.free();
    }
    // What was kept was watched through the relations the old preparation named (another table,
    // if the setting changed since): nothing of it is trusted past this one.
    LIVE.with(|l| *l.borrow_mut() = None);
    let prepared = {
        let _reading = xact::Reading::start(Watched::SessionTable);
        let rel = relation::describe(locked).unwrap_or_else(|e| SESSION_TABLE.unresolved(table, e));
        let snapshot = Snapshot::latest();
        let ((id, unkeepable), watch) = relation::with_pinned_settings(|| {
            (id_type(&rel, &snapshot), key_watch::status(&key_watch::SESSIONS, &rel, &snapshot))
        });
        drop(snapshot);
        let sql = format!(
            "SELECT \"userId\"::pg_catalog.text, {}, id::pg_catalog.text FROM {} WHERE id OPERATOR(pg_catalog.=) $1 LIMIT 2",
            relation::epoch_sql("expiresAt"),
            rel.qualified
        );
        let plan = relation::as_owner(rel.owner, || Plan::new(&sql, &[id.param()]));
        xact::watch(Watched::SessionTable, watch.relids.into_iter().chain(rel.watched()).collect());
        let unwatched = unkeepable.map(|why| format!("{}: {why}", rel.shown)).or(watch.problems.first().cloned());
        Prepared {
            table: table.to_owned(),
            oid: locked.oid,
            shown: rel.shown,
            owner: rel.owner,
            id,
            plan,
            seen: n,
            unwatched,
        }
    };
    let warn = prepared.unwatched.clone().filter(|why| WARNED.with(|w| w.borrow().as_ref() != Some(why)));
    if let Some(why) = warn {
        pgrx::warning!(
            "auth_jwt: session table {} is not watched for changes ({why}), so sessions are looked up in every transaction; run SELECT auth_jwt.watch_session_table(); as a superuser, with auth_jwt.session_table naming the table itself",
            prepared.shown
        );
        WARNED.with(|w| *w.borrow_mut() = Some(why));
    }
    PREPARED.with(|p| *p.borrow_mut() = Some(prepared));
}

/// For the session table's trigger: whether an UPDATE can end a session that a backend keeps
/// (`auth_jwt_core::update_can_end_session`), comparing the columns the lookup reads by name (a
/// partition's or inheritance child's may sit at other positions). A relation without them,
/// or an `"expiresAt"` of a type without an order here, always can.
///
/// # Safety
/// `td` is the TriggerData of a row-level UPDATE trigger call.
pub unsafe fn update_can_end_session(td: *mut pg_sys::TriggerData) -> bool {
    // SAFETY: the caller's trigger data: the relation's descriptor and both tuples are valid for
    // the call; SPI_getvalue returns NULL or a palloc'd string, in the trigger call's context.
    unsafe {
        let desc = (*(*td).tg_relation).rd_att;
        let cols = [c"id", c"userId", c"expiresAt"].map(|name| pg_sys::SPI_fnumber(desc, name.as_ptr()));
        if cols.iter().any(|&c| c <= 0) {
            return true;
        }
        let text = |tuple: pg_sys::HeapTuple, col: i32| {
            let v = pg_sys::SPI_getvalue(tuple, desc, col);
            (!v.is_null()).then(|| std::ffi::CStr::from_ptr(v).to_bytes())
        };
        let end = |tuple: pg_sys::HeapTuple| {
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(tuple, desc, cols[2], &mut isnull);
            match pg_sys::SPI_gettypeid(desc, cols[2]) {
                _ if isnull => None,
                pg_sys::TIMESTAMPTZOID | pg_sys::TIMESTAMPOID => Some(d.value() as i64),
                pg_sys::DATEOID => Some(i64::from(d.value() as i32)),
                _ => None,
            }
        };
        let row =
            |tuple| SessionRow { id: text(tuple, cols[0]), user_id: text(tuple, cols[1]), expires_at: end(tuple) };
        auth_jwt_core::update_can_end_session(&row((*td).tg_trigtuple), &row((*td).tg_newtuple))
    }
}

/// Check the columns the lookup reads, and say how the id is compared, and why a session read
/// from them may change with no row change the trigger sees (then nothing is kept).
fn id_type(rel: &Relation, snapshot: &Snapshot) -> (IdType, Option<String>) {
    let cols = relation::columns(rel, snapshot);
    let read = |name: &str| cols.iter().find(|c| c.name == name);
    let user_type = read("userId").map(|c| c.type_name.as_str()).unwrap_or_default();
    let unkeepable =
        if let Some(c) = ["id", "userId", "expiresAt"].into_iter().filter_map(read).find(|c| c.virtual_generated) {
            Some(format!(
                "its column \"{}\" is a virtual generated column, computed when read, which its trigger cannot compare",
                c.name
            ))
        } else if IdType::of(user_type).is_none() {
            Some(format!("its \"userId\" is of type {user_type}, whose values can change with no row changing"))
        } else {
            None
        };
    SESSION_TABLE.require_columns(rel, &cols);
    let expires = cols.iter().find(|c| c.name == "expiresAt").map(|c| c.type_name.as_str()).unwrap_or_default();
    if !matches!(expires, "timestamp with time zone" | "timestamp without time zone" | "date") {
        errors::configured_relation(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("auth_jwt session table {} has an \"expiresAt\" column of type {expires}", rel.shown),
            "A session's end is read as a point in time: timestamp with time zone, as Better Auth creates it, or timestamp or date (read as UTC).".into(),
            "Point auth_jwt.session_table at a view whose \"expiresAt\" has one of these types.",
        );
    }
    let id = cols.iter().find(|c| c.name == "id").map(|c| c.type_name.as_str()).unwrap_or_default();
    let id = IdType::of(id).unwrap_or_else(|| {
        errors::configured_relation(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("auth_jwt session table {} has an id column of type {id}", rel.shown),
            "Session ids are compared as text, uuid or integer, the types Better Auth generates.".into(),
            "Point auth_jwt.session_table at a view whose id column is one of these types.",
        )
    });
    (id, unkeepable)
}
