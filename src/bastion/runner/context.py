"""The ``BuildContext`` of a leased stage, from what the server sent (``StageDetails``).

Commit message, branch names, pull-request title and author come from a forge and are
untrusted: they only ever become ``DRONE_*`` environment values (``bastion.spec.environ``),
never YAML or shell text.
"""

from __future__ import annotations

from bastion import __version__
from bastion.rpc.messages import StageDetails
from bastion.spec.context import Build, BuildContext, Commit, Repo, System


def build_context(details: StageDetails) -> BuildContext:
    repo, build = details.repo, details.build
    host = details.system_host or "localhost"
    return BuildContext(
        repo=Repo(
            owner=repo.owner,
            name=repo.name,
            branch=repo.default_branch,
            private=repo.private,
            visibility=repo.visibility,
            link=repo.link,
            http_url=repo.http_url,
            ssh_url=repo.ssh_url,
            scm="git",
            trusted=repo.trusted,
        ),
        commit=Commit(
            sha=build.sha,
            before=build.before,
            ref=build.ref,
            branch=build.branch,
            source_branch=build.source_branch,
            message=build.message,
            author=build.author,
            author_name=build.author,
            author_email=build.author_email,
            author_avatar=build.author_avatar,
            link=build.link,
        ),
        build=Build(
            number=build.number,
            parent=build.parent,
            event=build.event,
            action=build.action,
            trigger=build.trigger,
            tag=build.tag,
            pull_request=build.pull_request,
            pull_request_title=build.title,
            deploy_to=build.deploy_to,
            cron=build.cron,
            link=build.link,
            created=build.created,
            started=build.started,
            fork=build.fork,
            params=tuple(sorted(build.params.items())),
        ),
        system=System(
            host=host,
            hostname=host,
            proto=details.system_proto or "http",
            version=f"bastion {__version__}",
        ),
    )
