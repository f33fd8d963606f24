"""The platforms this deployment serves, from the registered specs: what a connection to each takes."""

from __future__ import annotations

from chatbox.domain.schemas import ConnectionFieldPublic, PlatformPublic
from chatbox.ports.platforms import ConnectionField, PlatformSpec
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import CurrentAccount, RuntimeDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses

router = declared_router(prefix="/v1", tags=["platforms"], responses=THROTTLED_RESPONSES)


def _fields(fields: tuple[ConnectionField, ...]) -> list[ConnectionFieldPublic]:
    return [ConnectionFieldPublic(name=f.name, description=f.description, required=f.required) for f in fields]


def platform_public(spec: PlatformSpec) -> PlatformPublic:
    return PlatformPublic(
        name=spec.name,
        label=spec.label,
        mode=spec.mode.value,
        summary=spec.summary,
        secrets=_fields(spec.secrets),
        config=_fields(spec.config),
        send_options=spec.send_options.model_json_schema(),
    )


@router.get(
    "/platforms",
    summary="List the platforms this deployment serves and what their connections take",
    responses=error_responses(401),
)
def list_platforms(runtime: RuntimeDep, _account: CurrentAccount) -> list[PlatformPublic]:
    return [platform_public(spec) for spec in runtime.platforms.specs()]
