"""The wire contract between credd's agent and every client.

A frame is a 4-byte big-endian length followed by one MessagePack body of at
most MAX_FRAME bytes. Each body is a map whose "type" key names the message
(explicit snake_case tags: renaming a class never changes the wire). Bodies
must be canonical MessagePack (smallest encodings, float64, no duplicate keys)
so that the one strict decoder has exactly one reading of every frame.

This module imports nothing of credd's: `docs/protocol.md` describes the same
contract for clients in other languages.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, ForwardRef, Generic, Literal, TypeVar, get_args

import msgspec

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20
HEADER = struct.Struct(">I")

EntryType = str  # api_key, access_token, password, connection_string, secret,
#                  certificate, private_key, ssh_key, note, or any other word
ErrorCode = Literal[
    "locked", "not_found", "no_vault", "exists", "bad_request", "bad_passphrase", "denied",
    "integrity", "rate_limited", "version_mismatch", "audit_unavailable", "unavailable",
    "conflict", "in_use", "no_space", "vault_file_changed", "internal",
]
ChangeAction = Literal["set", "delete", "undelete", "move", "restore", "purge"]
SetMode = Literal["upsert", "create", "update"]
GrantMode = Literal["use", "read", "write"]  # docs/grants.md: use < read < write
VerifyOutcome = Literal["ok", "failed", "timeout", "error"]
MigrateOutcome = Literal["copied", "overwritten", "same", "conflict", "skipped"]


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True,
               omit_defaults=True, kw_only=True, gc=False):
    """Base of every message. `_secret` names fields whose values repr hides."""

    _secret: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            shown = "<redacted>" if name in self._secret and value is not None else repr(value)
            parts.append(f"{name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [(name, "<redacted>" if name in self._secret and value is not None else value)
                for name, value in ((n, getattr(self, n)) for n in self.__struct_fields__)]


class _Data(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True,
            gc=False):
    """Base of the untagged records carried inside messages.

    Messages and records are untracked by the garbage collector (`gc=False`): they
    hold only strings, numbers and containers of them, so they can never close a
    reference cycle, and a list of 100,000 entries then costs no collector passes.
    """


# ---------------------------------------------------------------- records

class Field(_Data):
    """One named field of an entry; `secret` fields are withheld from metadata."""

    name: str
    value: str = ""
    secret: bool = True

    def __repr__(self) -> str:
        shown = "<redacted>" if self.secret else repr(self.value)
        return f"Field(name={self.name!r}, value={shown}, secret={self.secret})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("name", self.name), ("value", "<redacted>" if self.secret else self.value),
                ("secret", self.secret)]


class EntryMeta(_Data):
    """Everything about an entry except its secret values."""

    name: str
    kind: EntryType = "secret"
    service: str = ""
    tags: tuple[str, ...] = ()         # tuples: untracked by the collector, unlike lists
    fields: dict[str, str] = {}        # non-secret fields, with their values
    secret_fields: tuple[str, ...] = ()  # names of secret fields (values withheld)
    has_value: bool = False
    has_notes: bool = False
    created: float = 0.0               # unix time
    updated: float = 0.0
    version: int = 1
    rotate_after: float | None = None  # seconds between rotations
    expires: float | None = None       # unix time
    deleted: float | None = None       # unix time it went to the trash
    value_changed: float = 0.0         # unix time the value last changed (0: not recorded)
    pending: float | None = None       # unix time `rotate` staged a new value (None: none)
    compromised: float | None = None   # unix time `incident` marked the value (None: not)
    mount: str = ""                    # the mount serving it ("" for the local vault)
    last_used: float | None = None     # unix time a value was last revealed (list, describe)


class VersionInfo(_Data):
    """One version in an entry's history."""

    version: int
    updated: float                     # when this version was written
    replaced: float | None = None      # when a later version superseded it


class AuditRecord(_Data):
    """One audit line; names appear only as HMACs under the vault's audit key.

    `seq` and `prev` chain the trail: `prev` is the SHA-256 (hex) of the previous
    line's exact bytes, so a removed, edited or inserted line breaks the chain."""

    time: float
    op: str
    outcome: str
    name_hmac: str = ""
    pid: int | None = None
    exe: str = ""
    mount: str = ""                    # the mount that served the name ("" for the local vault)
    uid: int | None = None
    program: str = ""                  # the peer as a person knows it: display only
    grant: str = ""                    # the grant the connection is bound to
    session: str = ""                  # the session it was bound through
    form: str = ""                     # for a mask hit, the encoding that was masked
    subject: str = ""                  # the grant a grant or session change is about
    seq: int = 0                       # 0: written before the trail was chained
    prev: str = ""


class MountInfo(_Data):
    """A mount as `status` and `credd mount ls` show it; never a credential."""

    name: str                          # the first segment of its entries' names
    backend: str                       # openbao, env, files
    location: str = ""                 # URL and path, directory, or variable prefix
    state: str = "ok"                  # ok, locked, error, unreachable, sealed ...
    message: str = ""                  # why, when the state is not ok
    warnings: list[str] = []           # served, but worth fixing (loose file modes ...)
    read_only: bool = False


class SlotInfo(_Data):
    """A key slot as `credd slots` shows it: what unlocks the vault, never key material."""

    label: str
    kind: str                          # passphrase, key, recovery
    kdf: str = "hkdf-sha256"           # argon2id for passphrase slots
    memory_kib: int = 0                # the Argon2id parameters (0: not argon2id)
    iterations: int = 0
    lanes: int = 0
    created: float | None = None       # unix time (None: made before credd recorded it)
    used: float | None = None          # the last unlock with it, to the hour (None: never)
    problem: str = ""                  # why it failed authentication ("" when it did not)


class TokenInfo(_Data):
    """A server token credd minted for a mount (`token_create`), as its server sees it now.
    Identified by its accessor, which can look a token up or revoke it but never log in."""

    mount: str
    accessor: str
    policies: tuple[str, ...] = ()
    created: float = 0.0               # unix time credd minted it
    expires: float | None = None       # unix time it expires (None: no TTL)
    uses_left: int = 0                 # 0: unlimited
    paths: tuple[str, ...] = ()        # what it was scoped to (empty: an existing --policy)
    read_only: bool = False


class Grant(_Data):
    """Access the owner lends to a session or a sandbox uid (docs/grants.md): which
    names, how, until when. `credd.grants` holds the rules that read it."""

    id: str
    names: tuple[str, ...]             # exact names and globs (`*` crosses `/`)
    mode: GrantMode
    created: float                     # unix times
    expires: float
    label: str = ""
    uses: int | None = None            # how many uses it allows; None: no limit
    used: int = 0                      # uses spent so far
    commands: tuple[str, ...] = ()     # argv patterns `run` may start; (): any
    confirm: bool = False              # each use waits for the owner's approval
    inject: bool = False               # a use grant's `inject` may write files it names
    uid: int | None = None             # the sandbox uid served on the grant's own socket
    parent: str | None = None          # the grant this one narrows
    revoked: float | None = None       # unix time
    created_by: str = ""               # the program that created it, for people
    socket: str = ""                   # the sandbox socket, while the agent listens on it


class AccessRequest(_Data):
    """A use of a `confirm` grant waiting for the owner's answer (`grant_answer`)."""

    id: str                            # r_ and 10 base32 characters
    grant: str
    op: str                            # the request's tag: get, get_many, reveal, run
    names: tuple[str, ...] = ()        # the names or references it asks for
    program: str = ""                  # the asking program, as a person names it
    pid: int | None = None
    time: float = 0.0                  # unix times: asked, and when it is refused unanswered
    expires: float = 0.0


class DueReason(_Data):
    """One reason `due` lists an entry for: expired, expiring, rotation_due, pending,
    check_failed, duplicate, short, unused (docs/lifecycle.md)."""

    reason: str
    when: float | None = None          # the moment it is about: expiry, due date, last use ...
    period: float | None = None        # rotation_due: the period in force
    field: str = ""                    # duplicate, short: which secret ("" for the value)
    names: list[str] = []              # duplicate: the others holding it (NAME or NAME/FIELD)
    length: int = 0                    # short: the value's length in characters
    note: str = ""                     # unused: "changed" (no use recorded); check_failed: why


class DueEntry(_Data):
    name: str
    kind: EntryType = "secret"
    reasons: list[DueReason] = []


class Verification(_Data):
    """The last run of an entry's check, as the client that ran it reported it."""

    time: float                        # unix time the agent recorded it
    outcome: VerifyOutcome
    exit_status: int | None = None     # the check's exit status (failed)
    seconds: float = 0.0               # how long it ran


class MigrateItem(_Data):
    """What a `migrate` did with one source entry; `reason` never holds a value."""

    name: str                          # the source entry
    to: str                            # its name at the destination
    outcome: MigrateOutcome            # dry_run: what would happen
    reason: str = ""                   # why (conflict, skipped, a source not deleted)
    deleted: bool = False              # the source entry went to its trash (dry_run: would)


class Reader(_Data):
    """Who received an entry's value, from `audit_who`: one program under one grant."""

    program: str
    count: int
    first: float                       # unix times of the first and the last
    last: float
    grant: str = ""


# ---------------------------------------------------------------- requests

R = TypeVar("R", covariant=True)
M = TypeVar("M")


class Asks(_Message, Generic[R]):
    """Base of every request; R is the one reply type it gets (besides `error`).

    The parameter is the table: `REPLY` below is read from it, clients check
    every reply against it, and `Client.call(Get(...))` is typed `Secret`.
    A request answered `ready` hands descriptors over, and its connection ends
    with one more frame: the response class `last` names (`LAST`).
    """

    last: ClassVar[str] = ""


class Hello(Asks["Welcome"], tag="hello"):
    protocol: int
    client: str = ""


class Status(Asks["StatusReply"], tag="status"):
    pass


class Init(Asks["RecoveryKey"], tag="init"):
    """`allow_short`: accept a passphrase shorter than 8 characters (credd.rules
    MIN_PASSPHRASE), which the person asked for by name; the agent refuses one otherwise."""

    _secret = ("passphrase",)
    passphrase: str
    kdf_memory_kib: int | None = None
    kdf_iterations: int | None = None
    kdf_lanes: int | None = None
    allow_short: bool = False


class Unlock(Asks["StatusReply"], tag="unlock"):
    """Exactly one of passphrase, key, recovery_key. `wait`: typed at a terminal, so
    wait out the unlock throttle instead of being refused."""

    _secret = ("passphrase", "key", "recovery_key")
    passphrase: str | None = None
    key: bytes | None = None
    recovery_key: str | None = None
    idle_timeout: float | None = None
    max_lifetime: float | None = None
    wait: bool = False


class Lock(Asks["Ok"], tag="lock"):
    pass


class ChangePassphrase(Asks["Ok"], tag="change_passphrase"):
    _secret = ("old", "new")
    old: str
    new: str
    allow_short: bool = False          # as in Init: for `new`


class Get(Asks["Secret"], tag="get"):
    """Without `field`, `name` may be `NAME/FIELD` or a `credd://` reference (credd.refs)."""

    name: str
    field: str | None = None


class GetMany(Asks["Secrets"], tag="get_many"):
    refs: list[str]


class Reveal(Asks["Revealed"], tag="reveal"):
    name: str
    version: int | None = None


class Describe(Asks["EntryReply"], tag="describe"):
    name: str


class Set(Asks["EntryReply"], tag="set"):
    """Write an entry. merge=False replaces it whole (None means default);
    merge=True keeps what is None, merges fields by name, and 0 clears
    rotate_after/expires."""

    _secret = ("value", "notes")
    name: str
    kind: EntryType | None = None
    service: str | None = None
    tags: list[str] | None = None
    value: str | None = None
    fields: list[Field] | None = None
    remove_fields: list[str] = []
    notes: str | None = None
    rotate_after: float | None = None
    expires: float | None = None
    mode: SetMode = "upsert"
    merge: bool = False


class Delete(Asks["EntryReply"], tag="delete"):
    name: str


class Undelete(Asks["EntryReply"], tag="undelete"):
    name: str


class Purge(Asks["Ok"], tag="purge"):
    name: str


class Move(Asks["EntryReply"], tag="move"):
    old: str
    new: str


class List(Asks["Entries"], tag="list"):
    prefix: str = ""
    service: str | None = None
    kind: EntryType | None = None
    tag: str | None = None
    contains: str | None = None
    due: bool = False                  # only entries past rotation or expiry
    cursor: str | None = None          # resume after this name (from `next`)
    limit: int = 0                     # 0: as many as fit in a frame


class Trash(Asks["Entries"], tag="trash"):
    pass


class History(Asks["HistoryReply"], tag="history"):
    name: str


class Restore(Asks["EntryReply"], tag="restore"):
    name: str
    version: int


class AddKeySlot(Asks["Ok"], tag="add_key_slot"):
    """`proof`: the passphrase or the recovery key (an unlocked vault is not enough)."""

    _secret = ("key", "proof")
    key: bytes
    label: str = "keyring"
    proof: str | None = None


class RemoveKeySlot(Asks["Ok"], tag="remove_key_slot"):
    """Removes a key slot or the recovery slot; `proof` as for add_key_slot."""

    _secret = ("proof",)
    label: str = "keyring"
    proof: str | None = None


class Slots(Asks["SlotList"], tag="slots"):
    pass


class Audit(Asks["AuditLog"], tag="audit"):
    """The newest records that match every filter given (None: no filter)."""

    limit: int = 100
    name: str | None = None            # an entry name: the agent matches its HMAC
    grant: str | None = None
    program: str | None = None         # exact, its first word, or a glob
    since: float | None = None         # unix time
    op: str | None = None
    outcome: str | None = None


class AuditWho(Asks["AuditReaders"], tag="audit_who"):
    """Every program and grant that received `name`'s value."""

    name: str
    since: float | None = None


class AuditVerify(Asks["AuditReport"], tag="audit_verify"):
    pass


class Check(Asks["CheckReport"], tag="check"):
    pass


class Rekey(Asks["RecoveryKey"], tag="rekey"):
    """`proof`: the passphrase, or the recovery key while unlocked with the passphrase."""

    _secret = ("proof",)
    proof: str | None = None


class GrantCreate(Asks["GrantReply"], tag="grant_create"):
    """A new grant; from a bound connection it must narrow that connection's grants."""

    names: list[str]
    mode: GrantMode
    ttl: float | None = None           # seconds; None: 8 h (at most 30 days)
    label: str = ""
    uses: int | None = None
    commands: list[str] = []
    confirm: bool = False
    inject: bool = False
    uid: int | None = None


class GrantList(Asks["GrantsReply"], tag="grant_list"):
    all: bool = False                  # also revoked and expired ones


class GrantRevoke(Asks["GrantReply"], tag="grant_revoke"):
    id: str


class GrantAnswer(Asks["Ok"], tag="grant_answer"):
    """The owner's answer to an access request."""

    request: str
    approve: bool


class SessionOpen(Asks["SessionReply"], tag="session_open"):
    """Make the asking process (the connection's peer) a session root bound to `grant`."""

    grant: str


class SessionClose(Asks["Ok"], tag="session_close"):
    session: str


class VerifyBackup(Asks["Ready"], tag="verify_backup"):
    """Check a copy of the vault with its key (the vault unlocked). Answered `ready`, the
    client sends the copy's descriptor on one byte (SCM_RIGHTS); then `backup_report`,
    and the connection closes. The agent never opens a path a client names."""

    last = "BackupReport"


class RestoreBackup(Asks["Ready"], tag="restore_backup"):
    """Put a copy of the vault in place of the vault file, the current one kept aside.
    Exactly one of the copy's passphrase or recovery key: the proof that its owner asks.
    Answered `ready`, the client sends the copy's descriptor on one byte (SCM_RIGHTS);
    then `backup_report`, and the connection closes. The vault is left locked."""

    last = "BackupReport"
    _secret = ("passphrase", "recovery_key")
    passphrase: str | None = None
    recovery_key: str | None = None


class Subscribe(Asks["Ok"], tag="subscribe"):
    """Answered `ok`; from then on the connection carries events only."""


class Stop(Asks["Ok"], tag="stop"):
    pass


class TokenCreate(Asks["TokenCreated"], tag="token_create"):
    """Mint a child token on a mount's server, limited to `paths` under the mount's prefix
    (a policy credd writes) or to an existing `policy`."""

    mount: str
    paths: list[str] = []
    policy: str | None = None
    ttl: float = 86400.0
    read_only: bool = False
    uses: int = 0                      # 0: unlimited
    wrap: float | None = None          # seconds: answer a response-wrapping token instead


class TokenList(Asks["Tokens"], tag="token_list"):
    mount: str | None = None           # None: every mount's


class TokenRevoke(Asks["Ok"], tag="token_revoke"):
    accessor: str
    mount: str | None = None           # None: the mount credd minted it on


class Due(Asks["DueReport"], tag="due"):
    """The entries that need attention, each with its reasons."""

    within: float = 14 * 86400.0       # due or expiring within this many seconds
    unused: float = 180 * 86400.0      # report entries unused this long (0: do not)
    values: bool = True                # read the values too: duplicates, short passwords
    now: float | None = None           # judge as at this unix time (None: now)


class Fingerprint(Asks["FingerprintReply"], tag="fingerprint"):
    """Without `field`, `name` is a path read as `get` reads it (NAME, else NAME/FIELD)."""

    name: str
    field: str | None = None


class Inspect(Asks["Inspection"], tag="inspect"):
    name: str


class Policy(Asks["PolicyReply"], tag="policy"):
    pass


class Rotate(Asks["EntryReply"], tag="rotate"):
    """Stage `value` as the entry's pending value: the current value stays current."""

    _secret = ("value",)
    name: str
    value: str


class RotateFinish(Asks["EntryReply"], tag="rotate_finish"):
    name: str


class RotateAbandon(Asks["EntryReply"], tag="rotate_abandon"):
    name: str


class GetPending(Asks["Secret"], tag="get_pending"):
    name: str


class RecordVerification(Asks["Ok"], tag="record_verification"):
    name: str
    outcome: VerifyOutcome
    exit_status: int | None = None
    seconds: float = 0.0


class Incident(Asks["IncidentReport"], tag="incident"):
    """Who received `name`'s value and which entries share it; marks it compromised."""

    name: str
    since: float | None = None         # readers since this unix time (None: the value's change)


class Migrate(Asks["Migrated"], tag="migrate"):
    """Copy the entries under `src` to `dst`, store to store inside the agent (no value
    crosses the socket), one batch per request: ask again with `cursor` = `next`."""

    src: str                           # `NAME/` a folder; `NAME` the entry and its folder
    dst: str
    cursor: str | None = None          # resume after this source name
    limit: int = 0                     # 0: the agent's batch (at most 100 entries)
    dry_run: bool = False
    overwrite: bool = False            # replace destination entries that differ
    delete_source: bool = False        # trash each source entry once its copy is confirmed
class Run(Asks["RunExit"], tag="run"):
    """The agent runs argv with the secrets in its environment and masks its output (how
    a `use` grant uses secrets). First the agent sends `ready`; the client then sends one
    byte carrying its stdin, stdout and stderr (SCM_RIGHTS), then only `resize` and
    `signal`; the reply, `run_exit` (or `error`), is the last frame, and the agent closes
    the connection.
    `env` is the caller's own environment (it may hold credentials): repr hides it."""

    _secret = ("env",)
    argv: list[str]
    env: dict[str, str] = {}           # the command's environment, besides the secrets
    secrets: dict[str, str] = {}       # variable -> credd://NAME[/FIELD]
    cwd: str = ""                      # "": the owner's home directory
    tty: bool = False                  # the caller's stdout is a terminal: run on a PTY
    rows: int = 0                      # its window size (0: read from the terminal)
    cols: int = 0
    umask: int = 0o022                 # the caller's, for the files the command creates


class Inject(Asks["Ok"], tag="inject"):
    """The agent renders a template's `{{ credd://... }}` references into a file the client
    opened (for a `use` grant that allows it, or anyone): after `ready` the client sends
    the file's descriptor on one byte (SCM_RIGHTS); the reply is `ok`, and the connection
    closes. The values never cross the socket."""

    template: str


Request = (
    Hello | Status | Init | Unlock | Lock | ChangePassphrase | Get | GetMany | Reveal |
    Describe | Set | Delete | Undelete | Purge | Move | List | Trash | History | Restore |
    AddKeySlot | RemoveKeySlot | Slots | Audit | AuditWho | AuditVerify | Check | Rekey |
    VerifyBackup | RestoreBackup | Subscribe | Stop | TokenCreate | TokenList | TokenRevoke |
    Migrate | Due | Fingerprint | Inspect | Policy | Rotate | RotateFinish | RotateAbandon |
    GetPending | RecordVerification | Incident | GrantCreate | GrantList | GrantRevoke |
    GrantAnswer | SessionOpen | SessionClose | Run | Inject
)

# ---------------------------------------------------------------- responses

class Welcome(_Message, tag="welcome"):
    protocol: int
    version: str
    pid: int
    capabilities: list[str] = []
    grant: str = ""                    # the grant this connection is bound to ("": the owner)
    mode: str = ""                     # what it may do: use, read or write ("": anything)


class StatusReply(_Message, tag="status"):
    state: Literal["no_vault", "locked", "unlocked"]
    vault: str
    socket: str
    pid: int
    version: str
    protocol: int = PROTOCOL_VERSION
    entries: int | None = None          # only while unlocked
    idle_timeout: float = 0.0
    max_lifetime: float = 0.0
    idle_left: float | None = None      # seconds until the idle lock
    lifetime_left: float | None = None  # seconds until the absolute lock
    retry_after: float = 0.0            # unlock throttle still in force
    capped: bool = False                # this unlock asked for more than --max-unlock allows
    mounts: list[MountInfo] = []        # the mount table in force, each mount's state
    config_error: str = ""              # why the mount table file was not (re)loaded
    damage: list[str] = []              # unlocked, but the file is damaged or rolled back:
    #                                     data operations refuse until it is repaired
    slots: dict[str, int] = {}          # key slots by kind, only while unlocked


class Ok(_Message, tag="ok"):
    pass


class RecoveryKey(_Message, tag="recovery_key"):
    _secret = ("recovery_key",)
    recovery_key: str


class Secret(_Message, tag="secret"):
    _secret = ("value",)
    name: str
    value: str
    field: str | None = None


class Secrets(_Message, tag="secrets"):
    """Values of a get_many, keyed by the reference exactly as asked."""

    _secret = ("values",)
    values: dict[str, str]


class Revealed(_Message, tag="revealed"):
    _secret = ("value", "secret_fields", "notes")
    entry: EntryMeta
    value: str = ""
    secret_fields: dict[str, str] = {}
    notes: str = ""


class EntryReply(_Message, tag="entry"):
    entry: EntryMeta


class Entries(_Message, tag="entries"):
    entries: list[EntryMeta]
    next: str | None = None             # pass as `cursor` for the next page
    total: int = 0                      # matches overall, across pages


class HistoryReply(_Message, tag="history"):
    name: str
    current: int
    versions: list[VersionInfo]


class AuditLog(_Message, tag="audit_log"):
    records: list[AuditRecord]


class AuditReaders(_Message, tag="audit_readers"):
    name_hmac: str
    readers: list[Reader] = []         # the most recent reader first


class AuditReport(_Message, tag="audit_report"):
    """What `audit_verify` found: `ok`, or the first broken place (`file`, `line`)."""

    ok: bool
    records: int = 0                   # chained records checked
    files: list[str] = []              # oldest first
    first_seq: int = 0
    head_seq: int = 0
    anchored_seq: int | None = None    # the last record the anchor covers
    anchored_at: float | None = None
    unchained: int = 0                 # records from before the trail was chained
    problem: str = ""
    file: str = ""
    line: int = 0


class CheckReport(_Message, tag="check_report"):
    checked: int
    problems: list[str] = []


class SlotList(_Message, tag="slot_list"):
    slots: list[SlotInfo]
    problems: list[str] = []            # what failed authentication ([] when nothing did)


class Ready(_Message, tag="ready"):
    """The request (`run`, `inject`, a backup's) was accepted: send the descriptors now,
    before its reply."""


class BackupReport(_Message, tag="backup_report"):
    """A copy of the vault as `verify_backup` checked it, or as `restore_backup` put it in
    place; what it counts is read from the file (entries and versions are row counts)."""

    vault_id: str                      # hex
    generation: int                    # the copy's; after a restore, the vault's new one
    format: int
    entries: int                       # entry rows, the trash included
    versions: int                      # older versions kept in history
    problems: list[str] = []           # what failed the check (verify_backup)
    replaced: str = ""                 # restore: where the file it replaced was kept


class TokenCreated(_Message, tag="token_created"):
    """The one time a minted token (or the wrapping token that holds it) leaves the agent."""

    _secret = ("token",)
    token: str
    info: TokenInfo
    wrapped: bool = False


class Tokens(_Message, tag="tokens"):
    tokens: list[TokenInfo]


class GrantReply(_Message, tag="grant"):
    grant: Grant


class GrantsReply(_Message, tag="grants"):
    grants: list[Grant]
    pending: list[AccessRequest] = []  # the owner's only


class SessionReply(_Message, tag="session"):
    session: str
    grant: Grant


class DueReport(_Message, tag="due_report"):
    entries: list[DueEntry]
    now: float                         # the time the report judged at
    checked: int = 0                   # entries looked at
    values: int = 0                    # values read (duplicates, short passwords)
    unread: list[str] = []             # mounts whose values were not read (remote)
    config_error: str = ""             # why config.toml's [rotation] was not (re)loaded


class FingerprintReply(_Message, tag="fingerprint"):
    name: str
    fingerprint: str                   # fp:xxxx-xxxx
    field: str | None = None


class Inspection(_Message, tag="inspection"):
    """An entry with what the agent knows about its lifecycle; no secret value."""

    entry: EntryMeta
    fingerprint: str = ""              # the value's ("" when it has none)
    field_fingerprints: dict[str, str] = {}  # each secret field's
    rotation: float | None = None      # the period in force (None: never rotated)
    verification: Verification | None = None  # the last check run (None: never)
    reasons: list[DueReason] = []      # what `due` says of it, duplicates aside


class PolicyReply(_Message, tag="policy"):
    rotation: dict[str, float]         # kind → period; a kind not listed is never rotated
    config_error: str = ""


class IncidentReport(_Message, tag="incident_report"):
    """The reply to `incident`: what received the value, and where else it is; no value."""

    entry: EntryMeta                   # as marked: `compromised` set
    since: float                       # readers counted from this unix time
    readers: list[Reader] = []         # the most recent reader first
    shared: list[DueReason] = []       # `duplicate` reasons: the entries holding the same secret
    unread: list[str] = []             # remote mounts whose values were not compared


class Migrated(_Message, tag="migrated"):
    """One batch of a `migrate`, in source order."""

    items: list[MigrateItem]
    next: str | None = None            # pass as `cursor`; None: nothing left
    remaining: int = 0                 # source entries after `next`
    stopped: str = ""                  # why the run cannot go on now (a server down): re-run
    versions_left: bool = False        # the source keeps older versions: only current ones copied
class RunExit(_Message, tag="run_exit"):
    """A run's last frame: how the command ended."""

    code: int                          # what `credd run` exits with: the status, or 128+N
    signal: int = 0                    # N, when signal N ended the command


class Error(_Message, tag="error"):
    code: ErrorCode
    message: str
    names: list[str] = []
    retry_after: float | None = None


Response = (
    Welcome | StatusReply | Ok | RecoveryKey | Secret | Secrets | Revealed | EntryReply |
    Entries | HistoryReply | AuditLog | AuditReaders | AuditReport | CheckReport | SlotList |
    Ready | BackupReport | TokenCreated | Tokens | Migrated | DueReport | FingerprintReply |
    Inspection | PolicyReply | IncidentReport | GrantReply | GrantsReply | SessionReply | RunExit |
    Error
)

# ---------------------------------------------------------------- events

class Locked(_Message, tag="locked"):
    reason: str = ""  # request, idle, lifetime, signal, shutdown, restore, session


class Unlocked(_Message, tag="unlocked"):
    pass


class EntryChanged(_Message, tag="entry_changed"):
    name: str
    action: ChangeAction
    new_name: str | None = None


class GrantChanged(_Message, tag="grant_changed"):
    grant: str
    action: Literal["create", "revoke", "expire"]


class AccessRequested(_Message, tag="access_requested"):
    """A bound program waits for the owner's answer (`grant_answer`)."""

    request: AccessRequest


Event = Locked | Unlocked | EntryChanged | GrantChanged | AccessRequested

# ---------------------------------------------------------------- run input

class Resize(_Message, tag="resize"):
    """The caller's terminal changed size (a run on a PTY)."""

    rows: int
    cols: int


class Signal(_Message, tag="signal"):
    """Pass a signal on to the command (its process group)."""

    signal: int


RunInput = Resize | Signal


def _reply_of(request: type) -> type[_Message]:
    bases = request.__orig_bases__  # type: ignore[attr-defined]  # set by typing.Generic
    (reply,) = get_args(bases[0])  # Asks["Secret"]: a name above
    found: type[_Message] = globals()[reply.__forward_arg__] if isinstance(reply, ForwardRef) \
        else reply
    return found


#: Each request type's reply type, as its class declares it (`Asks[...]`).
REPLY: dict[type, type[_Message]] = {cls: _reply_of(cls) for cls in get_args(Request)}
#: The last frame of each request answered `ready` (its class's `last`).
LAST: dict[type, type[_Message]] = {cls: globals()[cls.last] for cls in get_args(Request)
                                    if cls.last}

# ---------------------------------------------------------------- framing

_encoder = msgspec.msgpack.Encoder()
_request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
_response_decoder: msgspec.msgpack.Decoder[Response] = msgspec.msgpack.Decoder(Response)
_event_decoder: msgspec.msgpack.Decoder[Event | Error] = msgspec.msgpack.Decoder(
    Locked | Unlocked | EntryChanged | GrantChanged | AccessRequested | Error)
_run_input_decoder: msgspec.msgpack.Decoder[RunInput] = msgspec.msgpack.Decoder(RunInput)
_raw_decoder = msgspec.msgpack.Decoder()


class FrameError(ValueError):
    """A frame is malformed; the message names why, never its content."""


def encode(message: _Message) -> bytes:
    """One message as a whole frame: header + body."""
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise FrameError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    """Validate a 4-byte header before anything is allocated for the body."""
    length: int = HEADER.unpack(header)[0]
    if length == 0:
        raise FrameError("empty frame")
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return length


def _strict(decoder: msgspec.msgpack.Decoder[M], body: bytes) -> M:
    message = _typed(decoder, body)
    try:
        canonical = _encoder.encode(_raw_decoder.decode(body)) == body
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, OverflowError, ValueError,
            TypeError):
        raise FrameError("undecodable frame") from None
    if not canonical:
        raise FrameError("frame is not canonical MessagePack (duplicate keys or padded encodings)")
    return message


def decode_request(body: bytes) -> Request:
    """The agent's one strict decoder."""
    return _strict(_request_decoder, body)


def _typed(decoder: msgspec.msgpack.Decoder[M], body: bytes | bytearray) -> M:
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise FrameError(str(exc)) from None
    except (UnicodeDecodeError, RecursionError, OverflowError, ValueError, TypeError):
        raise FrameError("undecodable frame") from None


def decode_run_input(body: bytes) -> RunInput:
    """What a running command's client sends, decoded as strictly as requests."""
    return _strict(_run_input_decoder, body)


def decode_response(body: bytes | bytearray) -> Response:
    """Clients decode typed but skip the canonical check: the agent, already
    verified by uid, is the trusted side, and a 100,000-entry list decodes 3x faster."""
    return _typed(_response_decoder, body)


def decode_event(body: bytes | bytearray) -> Event | Error:
    return _typed(_event_decoder, body)


def tag_of(cls: type) -> str:
    tag: str = cls.__struct_config__.tag  # type: ignore[attr-defined]  # a msgspec Struct
    return tag


REQUEST_TYPES: dict[str, type] = {tag_of(c): c for c in get_args(Request)}
RESPONSE_TYPES: dict[str, type] = {tag_of(c): c for c in get_args(Response)}
EVENT_TYPES: dict[str, type] = {tag_of(c): c for c in get_args(Event)}
RUN_INPUT_TYPES: dict[str, type] = {tag_of(c): c for c in get_args(RunInput)}
