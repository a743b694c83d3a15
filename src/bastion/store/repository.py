"""INTERFACE CONTRACT (being implemented): the store's repository functions.

Every function opens its own short transaction, returns plain dataclasses from
``bastion.store.types`` and raises ``bastion.store.errors.NotFound`` / ``Conflict``.
Thread-safe; the server calls it from worker threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bastion.store.types import (
    Build,
    NewBuild,
    NewStage,
    Repo,
    Runner,
    Scope,
    Stage,
    Status,
    Step,
    Token,
    User,
)


class Store:
    def __init__(self, url: str, *, secret_key: bytes, clock: Callable[[], float] | None = None) -> None:
        """``url``: SQLAlchemy URL (sqlite:///path.db or postgresql+psycopg://...).
        ``secret_key``: 32 bytes for AES-256-GCM encryption of repository secrets."""
        raise NotImplementedError

    def migrate(self) -> None:
        """Alembic ``upgrade head``; safe to call on every start."""
        raise NotImplementedError

    def close(self) -> None: raise NotImplementedError

    # users
    def create_user(self, login: str, *, email: str = "", admin: bool = False, machine: bool = False) -> User: raise NotImplementedError
    def get_user(self, user_id: int) -> User | None: raise NotImplementedError
    def find_user(self, login: str) -> User | None: raise NotImplementedError
    def list_users(self) -> list[User]: raise NotImplementedError
    def update_user(self, login: str, *, email: str | None = None, admin: bool | None = None, active: bool | None = None) -> User: raise NotImplementedError
    def delete_user(self, login: str) -> None: raise NotImplementedError

    # API tokens (only hashes are stored)
    def create_token(self, user_id: int, name: str, token_hash: str, scopes: Sequence[Scope], expires: int = 0) -> Token: raise NotImplementedError
    def find_token(self, token_hash: str) -> tuple[Token, User] | None: raise NotImplementedError
    def touch_token(self, token_id: int, when: int) -> None: raise NotImplementedError
    def list_tokens(self, user_id: int) -> list[Token]: raise NotImplementedError
    def revoke_token(self, token_id: int) -> None: raise NotImplementedError
    def revoke_user_tokens(self, user_id: int) -> int: raise NotImplementedError

    # repositories
    def create_repo(self, owner: str, name: str, *, forge: str = "local", forge_id: str = "", http_url: str = "", ssh_url: str = "", link: str = "", default_branch: str = "main", private: bool = True, visibility: str = "private", config_path: str = ".drone.yml", active: bool = True, timeout: int = 60) -> Repo: raise NotImplementedError
    def get_repo(self, owner: str, name: str) -> Repo | None: raise NotImplementedError
    def get_repo_by_id(self, repo_id: int) -> Repo | None: raise NotImplementedError
    def find_repo_by_forge_id(self, forge: str, forge_id: str) -> Repo | None: raise NotImplementedError
    def list_repos(self, *, active_only: bool = False) -> list[Repo]: raise NotImplementedError
    def update_repo(self, repo_id: int, **changes: object) -> Repo: raise NotImplementedError
    def set_repo_secret(self, repo_id: int, name: str, value: str) -> None: raise NotImplementedError
    def get_repo_secret(self, repo_id: int, name: str) -> str | None: raise NotImplementedError

    # builds
    def create_build(self, repo_id: int, build: NewBuild, stages: Sequence[NewStage]) -> tuple[Build, list[Stage]]: raise NotImplementedError
    def get_build(self, repo_id: int, number: int) -> Build | None: raise NotImplementedError
    def get_build_by_id(self, build_id: int) -> Build | None: raise NotImplementedError
    def list_builds(self, repo_id: int, *, page: int = 1, per_page: int = 25) -> list[Build]: raise NotImplementedError
    def latest_build(self, repo_id: int, *, branch: str | None = None) -> Build | None: raise NotImplementedError
    def builds_with_status(self, statuses: Sequence[Status]) -> list[Build]: raise NotImplementedError
    def update_build(self, build_id: int, *, status: Status | None = None, error: str | None = None, started: int | None = None, finished: int | None = None) -> Build: raise NotImplementedError

    # stages and leases
    def list_stages(self, build_id: int) -> list[Stage]: raise NotImplementedError
    def get_stage(self, stage_id: int) -> Stage | None: raise NotImplementedError
    def update_stage(self, stage_id: int, *, status: Status | None = None, error: str | None = None, exit_code: int | None = None, started: int | None = None, stopped: int | None = None) -> Stage: raise NotImplementedError
    def pending_stages(self, *, limit: int = 100) -> list[Stage]: raise NotImplementedError
    def lease_stage(self, stage_id: int, runner_id: int, machine: str, lease_hash: str, expires: int) -> bool: raise NotImplementedError
    def check_lease(self, stage_id: int, runner_id: int, lease_hash: str) -> Stage | None: raise NotImplementedError
    def renew_lease(self, stage_id: int, expires: int) -> None: raise NotImplementedError
    def expired_leases(self, now: int) -> list[Stage]: raise NotImplementedError
    def extend_all_leases(self, expires: int) -> int: raise NotImplementedError

    # steps and logs
    def upsert_step(self, stage_id: int, number: int, name: str, *, status: Status, exit_code: int = 0, error: str = "", started: int = 0, stopped: int = 0, detached: bool = False, service: bool = False) -> Step: raise NotImplementedError
    def list_steps(self, stage_id: int) -> list[Step]: raise NotImplementedError
    def get_step(self, stage_id: int, number: int) -> Step | None: raise NotImplementedError
    def append_log_lines(self, step_id: int, lines: Sequence[tuple[int, float, str]]) -> int: raise NotImplementedError
    def read_log_lines(self, step_id: int, *, after: int = -1) -> list[tuple[int, float, str]]: raise NotImplementedError

    # runners
    def create_runner(self, name: str, token_hash: str) -> Runner: raise NotImplementedError
    def find_runner_by_token(self, token_hash: str) -> Runner | None: raise NotImplementedError
    def get_runner(self, runner_id: int) -> Runner | None: raise NotImplementedError
    def list_runners(self) -> list[Runner]: raise NotImplementedError
    def revoke_runner(self, name: str) -> None: raise NotImplementedError
    def touch_runner(self, runner_id: int, *, os: str, arch: str, labels: dict[str, str], capacity: int, version: str, when: int) -> None: raise NotImplementedError
    def stages_of_runner(self, runner_id: int, statuses: Sequence[Status]) -> list[Stage]: raise NotImplementedError

    # webhook deliveries
    def record_delivery(self, forge: str, delivery_id: str, when: int) -> bool: raise NotImplementedError
