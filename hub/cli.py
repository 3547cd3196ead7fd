"""The ``calhub`` command line: serve, sync, providers, check, authorize, and plugins' commands.

A plugin adds a command (``calhub outlook-agent``) through the entry-point group
``calhub.commands``: the object it names has ``name``, ``help``, ``add_arguments(parser)`` and
``run(args) -> int`` (see :class:`PluginCommand`); the core never imports the plugin by name.

Exit status: 0 when everything worked; 1 when a sync pass or a check failed; 2 for bad usage,
a refused configuration or an unusable database (one line per problem on stderr, never a
traceback). The configuration is ``--config PATH``, else ``$CALHUB_CONFIG``, else the embedded
default (no file: ``calhub.db`` in the working directory, admin on 127.0.0.1:8765, no accounts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Protocol

import anyio

from hub import __version__
from hub.boundary import GuardedProvider
from hub.config import Config, ConfigError, load_config
from hub.housekeeping import prune_history
from hub.mail.check import check_email
from hub.mail.service import MailService
from hub.metrics import Metrics
from hub.model import Agent, PassResult
from hub.plugins import Plugins, load_plugins
from hub.redact import redact
from hub.scheduler import Scheduler
from hub.secrets import StoreSecrets
from hub.service import configure_logging, serve, upsert_config_agents
from hub.spec import CalendarRef, CheckItem, Option, Provider, ProviderError
from hub.store import StoreError, hub_store, is_server_url

CONFIG_ENV = "CALHUB_CONFIG"
COMMANDS_GROUP = "calhub.commands"

log = logging.getLogger("hub.cli")


class UsageError(Exception):
    """Bad usage found after parsing (unknown agent or account): exit status 2."""


class PluginCommand(Protocol):
    """A subcommand a plugin adds through the ``calhub.commands`` entry-point group."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def plugin_commands() -> dict[str, PluginCommand]:
    """The commands plugins add; one that fails to load is left out with a warning."""
    found: dict[str, PluginCommand] = {}
    for ep in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        try:
            command = ep.load()
        except Exception as exc:  # a broken plugin must not break `calhub serve`
            log.warning("command %s not loaded: %s: %s", ep.name, type(exc).__name__, exc)
            continue
        found.setdefault(command.name, command)
    return found


def _parser(extra: Mapping[str, PluginCommand] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calhub",
        description="Calendar sync hub for IT helpdesks.",
        epilog=(
            f"The configuration is --config PATH, else ${CONFIG_ENV}, else the embedded "
            "default (calhub.db in the working directory, admin on 127.0.0.1:8765, no "
            "accounts). Exit status: 0 ok, 1 a sync or check failed, 2 bad usage, "
            "configuration or database."
        ),
    )
    parser.add_argument("--version", action="version", version=f"calhub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", metavar="PATH", type=Path, help="the TOML configuration")
        return sub

    with_config(commands.add_parser("serve", help="run the admin endpoint and the scheduler"))
    sync = with_config(commands.add_parser("sync", help="run one sync pass and exit (cron)"))
    sync.add_argument("--agent", metavar="ID", action="append", help="only this agent (repeat)")
    commands.add_parser("providers", help="list the provider plugins and what they support")
    check = with_config(commands.add_parser("check", help="test the connection of an account"))
    check.add_argument(
        "account", metavar="ACCOUNT", help="an [accounts.NAME] of the config, or 'email'"
    )
    check.add_argument(
        "--write", action="store_true", help="also create and delete a probe event per calendar"
    )
    check.add_argument(
        "--send", metavar="ADDRESS", help="check email: also send one test message to ADDRESS"
    )
    authorize = with_config(
        commands.add_parser(
            "authorize", help="one agent's one-time OAuth consent (per-agent accounts)"
        )
    )
    authorize.add_argument("account", metavar="ACCOUNT", help="an [accounts.NAME] of the config")
    authorize.add_argument("--agent", metavar="ID", required=True, help="the agent to authorize")
    migrate = commands.add_parser(
        "migrate", help="copy a SQLite hub into an empty PostgreSQL database and verify it"
    )
    migrate.add_argument("--from", dest="source", metavar="FILE", required=True, type=Path)
    migrate.add_argument("--to", dest="target", metavar="URL", required=True)
    migrate.add_argument(
        "--password-env", metavar="VAR", default="", help="the variable holding the password"
    )
    migrate.add_argument("--ca-file", metavar="PATH", default="", help="CA of verified TLS")
    for name, command in (extra or {}).items():
        command.add_arguments(commands.add_parser(name, help=command.help))
    return parser


def config_path(arg: Path | None, env: Mapping[str, str]) -> Path | None:
    """--config, else $CALHUB_CONFIG, else None (the embedded default)."""
    if arg is not None:
        return arg
    value = env.get(CONFIG_ENV, "").strip()
    return Path(value) if value else None


# --------------------------------------------------------------------------- providers


def _flags(cls: type) -> str:
    flags = [
        f"delta={'yes' if cls.supports_delta else 'no'}",
        f"batch={cls.max_batch}",
        f"concurrency={cls.max_concurrency}",
    ]
    if cls.client_ids:
        flags.append("client-ids")
    if cls.read_only:
        flags.append("read-only")
    return " ".join(flags)


_TOML_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _option_line(option: Option) -> str:
    """How to write one account key: ``password_env | password_file (secret, required)``."""
    key = f"{option.key}_env | {option.key}_file" if option.secret else option.key
    facts = [_TOML_NAMES.get(option.type, option.type.__name__)]
    if option.secret:
        facts.append("secret")
    if option.required:
        facts.append("required")
    elif option.default is not None:
        # JSON spells str, bool and numbers the way TOML does: "UTC", true, 30.0.
        facts.append(f"default {json.dumps(option.default, default=str)}")
    return f"{key} ({', '.join(facts)})" + (f": {option.help}" if option.help else "")


def cmd_providers(plugins: Plugins) -> int:
    registry = plugins.registry
    if not registry.names():
        print("no provider plugins registered")
    for name in registry.names():
        cls = registry.get(name)
        assert cls is not None
        source = registry.source(name)
        dist = f" from {source.distribution} {source.version or ''}".rstrip()
        where = f"[plugin {source.plugin}]{dist if source.distribution else ''}"
        print(f"{name:<12} {cls.title}  {where}  {_flags(cls)}")
        for option in cls.options:
            print(f"    {_option_line(option)}")
    for name, clashing in registry.clashes().items():
        who = " and ".join(o.describe() for o in clashing)
        print(f"provider {name!r} is registered by {who}: neither is used")
    for error in plugins.errors:
        print(f"plugin {error.plugin} failed to load: {error.reason}")
    return 0


# --------------------------------------------------------------------------- sync


def _describe(result: PassResult) -> str:
    if result.ok:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()) if v)
        return f"{result.result}" + (f" ({counts})" if counts else "")
    # A provider's error may quote a URL, and this line goes to cron's mail.
    return redact(result.error) if result.error else result.result


def _check_agents(known: set[str], agent_ids: list[str] | None) -> None:
    unknown = [a for a in agent_ids or () if a not in known]
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise UsageError(f"--agent: no agent named {', '.join(unknown)} (agents: {names})")


async def cmd_sync(config: Config, plugins: Plugins, agent_ids: list[str] | None) -> int:
    if not config.accounts:
        if agent_ids:  # a typo is a typo, with or without accounts
            _check_agents({a.id for a in await _stored_agents(config)}, agent_ids)
        print("no accounts configured: nothing to sync (hub calendars and feeds need none)")
        return 0
    async with hub_store(config.hub) as store:
        await upsert_config_agents(store, config)
        _check_agents({agent.id for agent in await store.list_agents()}, agent_ids)
        # With [email], the pass's changes write copies and alerts, and what is due is sent
        # before exiting (a copy still in its debounce goes with the next run or `serve`).
        mail = MailService(store, config) if config.email is not None else None
        if mail is not None:
            mail.install()
        async with Scheduler(
            store,
            config,
            plugins.registry,
            Metrics(),
            background=False,
            observers=mail.observers if mail is not None else (),
        ) as scheduler:
            results = await scheduler.run_once(agent_ids)
        if mail is not None:
            await mail.sender.send_due()
        if not any(r.error and r.error.startswith("database: ") for r in results.values()):
            await prune_history(store, config.hub)  # else it would fail the same way
    return _report(results)


def _report(results: Mapping[str, PassResult]) -> int:
    """One line per agent: ok ones on stdout, failed ones and skipped items on stderr (so
    cron mails exactly the trouble)."""
    for agent_id, result in sorted(results.items()):
        print(f"{agent_id}: {_describe(result)}", file=sys.stdout if result.ok else sys.stderr)
        for item in result.skipped_items:
            print(f"{agent_id}: skipped {item}", file=sys.stderr)
    return 0 if all(result.ok for result in results.values()) else 1


# --------------------------------------------------------------------------- check


async def _stored_agents(config: Config) -> list[Agent]:
    """The config's agents and the database's, without creating a database that is not
    there (a connection test or a no-op sync must not make one as a side effect)."""
    agents = {a.id: a for a in config.agents}
    if is_server_url(config.hub.database) or await anyio.Path(config.hub.database).exists():
        async with hub_store(config.hub) as store:
            for agent in await store.list_agents():
                agents.setdefault(agent.id, agent)
    return list(agents.values())


async def _agents_of(config: Config, account: str) -> list[Agent]:
    return [a for a in await _stored_agents(config) if a.account == account]


def _print_check(item: CheckItem) -> None:
    line = f"{'ok' if item.ok else 'FAIL':<4}  {item.what}" + (
        f": {item.detail}" if item.detail else ""
    )
    print(line)


def _build(config: Config, plugins: Plugins, name: str, command: str) -> Provider:
    """The (unopened) provider of account ``name``; UsageError names a missing account."""
    account = config.accounts.get(name)
    if account is None:
        names = ", ".join(sorted(config.accounts)) or "none configured"
        raise UsageError(f"{command}: no account named {name!r} (accounts: {names})")
    cls = plugins.registry.get(account.provider)
    if cls is None:  # load_config already refused this; a plugin may have vanished since
        raise UsageError(f"accounts.{name}.provider: unknown provider {account.provider!r}")
    try:
        return cls(account, Metrics())
    except (ValueError, TypeError) as exc:
        raise ConfigError([str(exc)]) from None


async def cmd_check(config: Config, plugins: Plugins, name: str, write: bool) -> int:
    provider = _build(config, plugins, name, "check")
    cals = [
        CalendarRef(agent_id=a.id, mailbox=a.email, calendar=a.calendar)
        for a in await _agents_of(config, name)
    ]
    async with AsyncExitStack() as stack:
        # Per-agent secrets (refresh tokens) live in the database: read it if there is one.
        if is_server_url(config.hub.database) or await anyio.Path(config.hub.database).exists():
            store = await stack.enter_async_context(hub_store(config.hub))
            provider.use_secrets(StoreSecrets(store, name))
        return await _run_check(provider, cals, name, write)


async def _run_check(provider: Provider, cals: list[CalendarRef], name: str, write: bool) -> int:
    guarded = GuardedProvider(provider)  # check reports what fails, whatever a plugin raises
    items: list[CheckItem]
    try:
        await guarded.open()
    except ProviderError as exc:
        items = [CheckItem("connect", False, str(exc))]
    else:
        try:
            items = await guarded.check(cals, write)
        finally:
            with contextlib.suppress(ProviderError):
                await guarded.close()
    if not cals:
        items.append(CheckItem("agents", True, f"no agent uses account {name!r} yet"))
    for item in items:
        _print_check(item)
    return 0 if all(item.ok for item in items) else 1


async def cmd_check_email(config: Config, send_to: str | None) -> int:
    """``calhub check email [--send ADDRESS]``: see :mod:`hub.mail.check`."""
    if config.email is None:
        raise UsageError("check email: the configuration has no [email] section")
    items = await check_email(config.email, send_to)
    for item in items:
        _print_check(item)
    return 0 if all(item.ok for item in items) else 1


async def cmd_authorize(config: Config, plugins: Plugins, name: str, agent_id: str) -> int:
    provider = _build(config, plugins, name, "authorize")
    async with hub_store(config.hub) as store:
        await upsert_config_agents(store, config)
        agent = await store.get_agent(agent_id)
        if agent is None or agent.account != name:
            ids = sorted(a.id for a in await store.list_agents() if a.account == name)
            raise UsageError(
                f"--agent: no agent {agent_id!r} on account {name!r} "
                f"(its agents: {', '.join(ids) or 'none'})"
            )
        provider.use_secrets(StoreSecrets(store, name))
        guarded = GuardedProvider(provider)  # a plugin's own exception becomes one line
        cal = CalendarRef(agent_id=agent.id, mailbox=agent.email, calendar=agent.calendar)
        try:
            await guarded.open()
            summary = await guarded.authorize(cal, _announce)
        except ProviderError as exc:
            print(f"authorize {name} --agent {agent_id}: {exc}", file=sys.stderr)
            return 1
        finally:
            with contextlib.suppress(ProviderError):
                await guarded.close()
    print(summary)
    return 0


# --------------------------------------------------------------------------- main


def _fail(lines: Sequence[str]) -> int:
    for line in lines:
        print(line, file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    extra = plugin_commands()
    args = _parser(extra).parse_args(argv)
    if args.command in extra:
        return extra[args.command].run(args)
    env = os.environ
    # A long-running service logs what it does; one-shot commands only what went wrong.
    configure_logging(logging.INFO if args.command == "serve" else logging.WARNING)
    plugins = load_plugins(env)
    if args.command == "providers":
        return cmd_providers(plugins)
    try:
        if args.command == "migrate":
            return asyncio.run(cmd_migrate(args, env))
        config = load_config(config_path(args.config, env), plugins.registry, env)
        if args.command == "serve":
            return asyncio.run(serve(config, plugins.registry, announce=_announce))
        if args.command == "sync":
            return asyncio.run(cmd_sync(config, plugins, args.agent))
        if args.command == "authorize":
            return asyncio.run(cmd_authorize(config, plugins, args.account, args.agent))
        if args.account == "email" and "email" not in config.accounts:
            return asyncio.run(cmd_check_email(config, args.send))
        if args.send is not None:
            raise UsageError("--send: only with `calhub check email`")
        return asyncio.run(cmd_check(config, plugins, args.account, args.write))
    except ConfigError as exc:
        return _fail(exc.problems)
    except StoreError as exc:
        return _fail([f"hub.database: {exc}"])
    except UsageError as exc:
        return _fail([str(exc)])
    except KeyboardInterrupt:
        return 130


async def cmd_migrate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``calhub migrate --from FILE --to URL``: see :mod:`hub.store.copy`."""
    from hub.store.copy import copy_hub
    from hub.store.postgres import PgStore
    from hub.store.sqlite import SqliteStore

    if not is_server_url(args.target):
        raise UsageError(f"migrate --to: expected a postgresql:// URL, got {args.target!r}")
    if not await anyio.Path(args.source).is_file():
        raise UsageError(f"migrate --from: no such file {str(args.source)!r}")
    password = env.get(args.password_env) if args.password_env else None
    if args.password_env and password is None:
        raise UsageError(f"migrate --password-env: variable {args.password_env} is not set")
    target = PgStore(args.target, password=password, ca_file=args.ca_file or None)
    async with SqliteStore(args.source) as source, target:
        counts = await copy_hub(source, target, progress=print)
    for count in counts:
        if not count.ok:
            print(
                f"{count.table}: {count.source} rows in SQLite, {count.target} in PostgreSQL",
                file=sys.stderr,
            )
    if not all(count.ok for count in counts):
        return 1
    print(f"verified: the {len(counts)} tables have the same row counts on both sides")
    return 0


def _announce(line: str) -> None:
    print(line, flush=True)
