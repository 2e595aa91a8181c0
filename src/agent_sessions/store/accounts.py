"""Accounts, API keys, organizations and memberships."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from agent_sessions.exceptions import Conflict, NotFound
from agent_sessions.ids import new_uuid
from agent_sessions.store.models import Account, ApiKey, Membership, Organization, utcnow
from agent_sessions.store.reads import Query, Reader, first

LAST_USED_RESOLUTION = timedelta(seconds=60)
"""``last_used_at`` is refreshed at most this often: authentication is not a write per request."""


@dataclass(frozen=True)
class ActiveKey:
    """What authentication needs to know about a key, read in one query."""

    id: str
    account_id: str
    key_hash: str
    last_used_at: datetime | None


def create_account(
    db: Session, *, name: str | None = None, jwt_subject: str | None = None
) -> Account:
    """A new account; ``jwt_subject`` must not already name an account (as its id or its
    subject), or one token's ``sub`` would act as either of two accounts."""
    account_id = new_uuid()
    if jwt_subject is not None and _names_an_account(db, jwt_subject):
        raise Conflict(f"JWT subject {jwt_subject!r} already names an account")
    if _names_an_account(db, account_id):  # a subject someone chose to equal this new id
        raise Conflict("Account id collides with an existing JWT subject; try again")
    account = Account(id=account_id, name=name, jwt_subject=jwt_subject, created_at=utcnow())
    db.add(account)
    db.flush()
    return account


def get_account(db: Session, account_id: str) -> Account:
    account = db.get(Account, account_id)
    if account is None:
        raise NotFound(f"Account {account_id} not found")
    return account


_ACCOUNT_FOR_SUBJECT = Query(
    select(func.count().label("n"), func.min(Account.id).label("id")).where(
        or_(Account.id == bindparam("sub"), Account.jwt_subject == bindparam("sub"))
    )
)


def account_for_subject(db: Reader, subject: str) -> str | None:
    """The account a JWT ``sub`` acts as: an account id, or an account's ``jwt_subject``.

    None when no account matches, and also when two do (one's id is the other's subject, in
    a database from before :func:`create_account` refused that): such a token is ambiguous.
    """
    row = first(db, _ACCOUNT_FOR_SUBJECT, sub=subject)
    return str(row.id) if row is not None and row.n == 1 else None


def _names_an_account(db: Reader, subject: str) -> bool:
    row = first(db, _ACCOUNT_FOR_SUBJECT, sub=subject)
    return row is not None and row.n > 0


def add_key(db: Session, *, account_id: str, prefix: str, key_hash: str) -> ApiKey:
    get_account(db, account_id)
    key = ApiKey(
        id=new_uuid(), account_id=account_id, prefix=prefix, key_hash=key_hash, created_at=utcnow()
    )
    db.add(key)
    db.flush()
    return key


# Built once: constructing the expression per request was a fifth of an authenticated GET.
_ACTIVE_KEY_BY_HASH = Query(
    select(ApiKey.id, ApiKey.account_id, ApiKey.key_hash, ApiKey.last_used_at).where(
        ApiKey.key_hash == bindparam("hash"), ApiKey.revoked_at.is_(None)
    )
)


def active_key_by_hash(db: Reader, key_hash: str) -> ActiveKey | None:
    row = first(db, _ACTIVE_KEY_BY_HASH, hash=key_hash)  # key_hash is unique
    return None if row is None else ActiveKey(*row)


def touch_key(db: Session, key_id: str, now: datetime) -> None:
    db.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


def list_keys(db: Session, account_id: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if account_id is not None:
        stmt = stmt.where(ApiKey.account_id == account_id)
    return list(db.scalars(stmt))


def revoke_key(db: Session, key_id: str) -> ApiKey:
    key = db.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def create_organization(db: Session, *, name: str) -> Organization:
    org = Organization(id=new_uuid(), name=name, created_at=utcnow())
    db.add(org)
    db.flush()
    return org


def add_member(db: Session, *, organization_id: str, account_id: str) -> None:
    if db.get(Organization, organization_id) is None:
        raise NotFound(f"Organization {organization_id} not found")
    get_account(db, account_id)
    if db.get(Membership, (organization_id, account_id)) is None:
        db.add(
            Membership(organization_id=organization_id, account_id=account_id, created_at=utcnow())
        )


def is_member(db: Session, *, organization_id: str, account_id: str) -> bool:
    return db.get(Membership, (organization_id, account_id)) is not None


def may_act_for(
    db: Session, *, account_id: str, target_id: str, organization_id: str | None = None
) -> bool:
    """Whether ``account_id`` may act as ``target_id``: itself, or a fellow member of one of its
    organizations (of ``organization_id`` only, when given), as the Recoup API lets an
    organization's key act for its member accounts."""
    if account_id == target_id:
        return True
    mine = select(Membership.organization_id).where(Membership.account_id == account_id)
    if organization_id is not None:
        mine = mine.where(Membership.organization_id == organization_id)
    stmt = select(Membership.account_id).where(
        Membership.account_id == target_id, Membership.organization_id.in_(mine)
    )
    return db.execute(stmt.limit(1)).first() is not None


def count_accounts(db: Session) -> int:
    return len(db.execute(select(Account.id).limit(1)).all())


_DEFAULT_MODEL = Query(select(Account.default_model_id).where(Account.id == bindparam("id")))


def default_model_of(db: Reader, account_id: str) -> str | None:
    """The account's own default model; None when it has set none (the operator's applies)."""
    row = first(db, _DEFAULT_MODEL, id=account_id)
    return None if row is None else row.default_model_id


def set_default_model(db: Session, account_id: str, model_id: str | None) -> bool:
    """Set (or, with None, clear) the account's default model; whether one was set before."""
    account = get_account(db, account_id)
    had = account.default_model_id is not None
    account.default_model_id = model_id
    db.flush()
    return had
