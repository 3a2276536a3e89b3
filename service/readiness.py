"""One readiness model, shared by the health endpoints, the start-up log and the fallback decision.

- A **variant** is ready when it is loaded and its backend can answer now (a Triton that is down, or that
  does not have the model, makes it unavailable while it stays loaded).
- A **family** is ready when every variant its calls are routed to (the experiment's variants with a
  weight, or the default variant) can answer, directly or through its configured fallback: that is exactly
  when a routed call gets an answer.
- The **pod** (``/v2/health/ready``) is ready when the variants are loaded and every routed family is
  ready. A variant no family routes to (a direct-only variant, or one unloaded through model control) does
  not take the pod out of rotation. With ``strict_readiness`` (Triton's meaning), every loaded variant must
  also answer directly, through no fallback; variants unloaded through model control still do not count.
"""

from __future__ import annotations

from collections.abc import Callable

from service.errors import SlimServeError
from service.registry.store import ModelStore, ServedVariant
from service.routing.router import Router

FallbackFor = Callable[[str, str], str | None]  # (model name, variant) -> fallback variant or None


class Readiness:
    def __init__(self, store: ModelStore, router: Router, fallback_for: FallbackFor, *, strict: bool) -> None:
        self._store = store
        self._router = router
        self._fallback_for = fallback_for
        self._strict = strict

    def answers_directly(self, name: str) -> bool:
        """A call to ``name`` (a variant's model name) would be served by it now."""
        try:
            self._store.find(name, None)
        except SlimServeError:
            return False
        return True

    def fallback_model(self, name: str) -> str | None:
        """The model name of ``name``'s configured fallback, or None; routed calls only."""
        versions = self._store.versions_of(name)
        card = versions[max(versions)].model.card
        fallback = self._fallback_for(name, card.variant)
        return f"{card.family}-{fallback}" if fallback else None

    def substitute(self, unavailable: str, *, routed: bool, error: SlimServeError) -> ServedVariant:
        """The variant that answers a routed call while ``unavailable`` cannot. Otherwise ``error`` again,
        saying truthfully why no fallback answers: none is set, or a fallback only answers routed calls."""
        fallback = self.fallback_model(unavailable)
        if fallback is None:
            raise type(error)(f"{error.message}; it has no fallback")
        if not routed:
            raise type(error)(
                f"{error.message}; no fallback applies to direct calls "
                f"(its fallback '{fallback}' answers calls to the family only)"
            )
        if not self._store.has(fallback):
            raise type(error)(f"{error.message}; its fallback '{fallback}' is not in the registry")
        return self._store.find(fallback, None)

    def answers(self, name: str) -> bool:
        """A routed call assigned to ``name`` would get an answer: from it, or from its fallback."""
        if self.answers_directly(name):
            return True
        fallback = self.fallback_model(name) if self._store.has(name) else None
        return fallback is not None and self.answers_directly(fallback)

    def routed(self, family: str) -> list[str]:
        """The variants (model names) calls to ``family`` may be assigned to, among those in the registry."""
        experiment = next((e for e in self._router.experiments() if e.family == family), None)
        if experiment is None:
            candidates = [self._router.default_model(family)]
        else:
            candidates = [f"{family}-{stage}" for variant in experiment.variants if variant.weight > 0
                          for stage in experiment.stages(variant.name)]  # fmt: skip
        return [name for name in candidates if self._store.has(name)]

    def family_ready(self, family: str) -> bool:
        routed = self.routed(family)
        return bool(routed) and all(self.answers(name) for name in routed)

    def problems(self) -> list[str]:
        """Why the pod is not ready; empty when it is."""
        if not self._store.loaded:
            return ["variants are still loading"]
        if self._store.registry_error:
            return [f"cannot read the registry: {self._store.registry_error}"]
        variants = self._store.all()
        if not variants:
            return ["the registry has no variants"]
        problems = []
        for family in self._store.families():
            for name in self.routed(family):
                if not self.answers(name):
                    problems.append(f"family '{family}' routes to '{name}', which cannot answer: "
                                    f"{self._describe(name)}")  # fmt: skip
        if self._strict:
            problems += [
                f"strict readiness: '{served.name}' version {served.version} is {': '.join(served.status())}"
                for served in variants
                if not served.serving and not served.unloaded
            ]
        return problems

    def _describe(self, name: str) -> str:
        versions = self._store.versions_of(name)
        served = versions[max(versions)]
        state, reason = served.status()
        fallback = self.fallback_model(name)
        fallback_says = (
            f"its fallback '{fallback}' cannot answer either" if fallback else "it has no fallback"
        )
        return f"{state} ({reason}); {fallback_says}"

    def ready(self) -> bool:
        return not self.problems()

    @staticmethod
    def variant_line(served: ServedVariant) -> str:
        state, reason = served.status()
        return f"{served.name}:{served.version} {state}" + (f" ({reason})" if reason else "")
