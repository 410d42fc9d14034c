"""Turn Mixer-shape YAML documents into a validated, compiled config, collecting every problem."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixer.attributes import STRING_LIKE, AttributeManifest, ValueType, default_manifest
from mixer.config import _attrgen, _rbac
from mixer.config._rbac import RBAC_API_VERSION, RBAC_KINDS, RBAC_PILOT_KINDS, RbacPolicy, UsesRbacPolicy
from mixer.config._source import Note, Path, Problem, SourceDocument, read_documents
from mixer.expr import Expression, ExpressionError, compile_expression
from mixer.registry import AdapterRegistry, UnknownAdapter
from mixer.sdk import Adapter, InstanceSchema, ParamsError
from mixer.templates import CAMEL_ALIASES, TEMPLATES, Field, FieldKind, Fields, Template, Variety

API_VERSIONS = frozenset({"config.istio.io/v1alpha2", "policy.istio.io/v1beta1"})
MIXER_API_GROUPS = frozenset(api.partition("/")[0] for api in API_VERSIONS)
KINDS = ("handler", "instance", "rule", "attributemanifest")
DEFAULT_NAMESPACE = "istio-system"

# A compiled field tree mirrors the template: Expression, {name: Expression}, or a nested group.
CompiledFields = dict[str, Any]


@dataclass
class CompiledHandler:
    name: str  # "prometheus.handler.istio-system"
    adapter_name: str
    adapter: Adapter
    params: Any
    # The params as written: the handler's identity across config swaps. For an adapter that uses
    # the RbacPolicy, the policy's fingerprint is added ("$rbacPolicy") so a role change rebuilds it.
    raw_params: Mapping[str, Any]


@dataclass
class CompiledInstance:
    name: str  # "requestcount.instance.istio-system"
    template: Template
    fields: CompiledFields
    schema: InstanceSchema


@dataclass
class CompiledAction:
    handler: CompiledHandler
    instances: list[CompiledInstance]
    name: str = ""


@dataclass
class CompiledRule:
    name: str  # "promhttp.rule.istio-system"
    match: Expression | None  # None: always
    actions: list[CompiledAction]


@dataclass
class CompiledConfig:
    manifest: AttributeManifest
    handlers: dict[str, CompiledHandler] = field(default_factory=dict)
    instances: dict[str, CompiledInstance] = field(default_factory=dict)
    rules: list[CompiledRule] = field(default_factory=list)
    rbac: RbacPolicy = field(default_factory=RbacPolicy)  # handed to adapters that use it (rbac)
    notes: list[Note] = field(default_factory=list)  # skipped documents, recognised-but-not-run handlers


class ConfigError(ValueError):
    """Config that failed validation; ``problems`` holds every error found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def compile_config(
    sources: Sequence[tuple[str, str]], registry: AdapterRegistry, strict: bool = False
) -> CompiledConfig:
    """Compile ``(file name, YAML text)`` pairs; raise ConfigError listing every problem.

    ``strict``: documents of other API groups are errors instead of skipped with a note.
    """
    compiler = _Compiler(registry, strict)
    compiler.run(sources)
    if compiler.problems:
        raise ConfigError(compiler.problems)
    return compiler.config


@dataclass
class _Doc:
    source: SourceDocument
    kind: str
    name: str
    namespace: str
    spec: Mapping[str, Any]

    @property
    def qualified(self) -> str:
        return f"{self.name}.{self.kind}.{self.namespace}"

    def problem(self, path: Path, message: str, offset: int | None = None, at_key: bool = False) -> Problem:
        label = f"{self.kind}[{self.name}.{self.namespace}]"
        rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        return self.source.problem(path, message, label + rest, offset, at_key)


class _Compiler:
    def __init__(self, registry: AdapterRegistry, strict: bool = False) -> None:
        self.registry = registry
        self.strict = strict
        self.problems: list[Problem] = []
        self.config = CompiledConfig(manifest=default_manifest())
        self.invalid: set[str] = set()  # documents that failed, so references to them say so
        # kubernetesenv handlers (checked, not run: see _attrgen) and how many rule actions name each.
        self.generators: dict[str, _Doc] = {}
        self.generator_actions: dict[str, int] = {}

    def run(self, sources: Sequence[tuple[str, str]]) -> None:
        docs: list[_Doc] = []
        for file, text in sources:
            parsed, problems = read_documents(text, file)
            self.problems.extend(problems)
            for source in parsed:
                doc = self._header(source)
                if doc is not None:
                    docs.append(doc)
        self._check_duplicates(docs)
        self.invalid = {doc.qualified for doc in docs}
        by_kind = {kind: [d for d in docs if d.kind == kind] for kind in (*KINDS, *RBAC_KINDS)}
        for doc in by_kind["attributemanifest"]:
            self._manifest(doc)
        self._rbac_documents(by_kind["ServiceRole"], by_kind["ServiceRoleBinding"])
        for doc in by_kind["handler"]:
            self._handler(doc)
        for doc in by_kind["instance"]:
            self._instance(doc)
        for doc in by_kind["rule"]:
            self._rule(doc)
        for name, doc in self.generators.items():
            line, column, _ = doc.source.positions.get(("spec", "compiledAdapter"), (1, 1, None))
            message = _attrgen.warning(name, self.generator_actions.get(name, 0))
            self.config.notes.append(Note("warning", doc.source.file, line, column, message))

    # -- document headers -------------------------------------------------------------------

    def _header(self, source: SourceDocument) -> _Doc | None:
        data = source.data
        if not isinstance(data, dict):
            self.problems.append(source.problem((), "a config document must be a mapping"))
            return None
        ok = True
        api = data.get("apiVersion")
        kind = data.get("kind")
        if _is_other_api_group(api, kind):
            self._other_api_group(source, str(api))
            return None
        if api not in (*API_VERSIONS, RBAC_API_VERSION):
            known_apis = ", ".join(sorted((*API_VERSIONS, RBAC_API_VERSION)))
            self.problems.append(source.problem(("apiVersion",), f"apiVersion {api!r} is not one of {known_apis}"))
            ok = False
        kinds = RBAC_KINDS if api == RBAC_API_VERSION else KINDS
        if kind not in kinds:
            self.problems.append(source.problem(("kind",), f"unknown kind {kind!r} (known: {', '.join(kinds)})"))
            ok = False
        metadata = data.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not isinstance(name, str) or not name:
            self.problems.append(source.problem(("metadata",), "metadata.name is required"))
            ok = False
        namespace = (metadata.get("namespace") if isinstance(metadata, dict) else None) or DEFAULT_NAMESPACE
        spec = data.get("spec")
        if not isinstance(spec, dict):
            self.problems.append(source.problem(("spec",), "spec must be a mapping"))
            ok = False
        for key in data:
            if key not in ("apiVersion", "kind", "metadata", "spec"):
                self.problems.append(source.problem((key,), "unknown field", at_key=True))
        if not ok:
            return None
        return _Doc(source, str(kind), str(name), str(namespace), spec)  # type: ignore[arg-type]

    def _other_api_group(self, source: SourceDocument, api: str) -> None:
        """A document of another API group: skipped with a note, or an error when strict."""
        metadata = source.data.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        what = f"{source.data.get('kind', '(no kind)')} {name or '(unnamed)'}" + (f".{namespace}" if namespace else "")
        if self.strict:
            self.problems.append(source.problem(("apiVersion",), f"{what} ({api}) is not Mixer config (strict)"))
            return
        line, column, _ = source.positions.get((), (1, 1, None))
        self.config.notes.append(Note("info", source.file, line, column, f"skipped {what} ({api}): not Mixer config"))

    def _check_duplicates(self, docs: list[_Doc]) -> None:
        seen: dict[str, _Doc] = {}
        for doc in docs:
            if doc.qualified in seen:
                first = seen[doc.qualified].source
                self.problems.append(
                    doc.problem(("metadata", "name"), f"duplicate {doc.kind}; first defined in {first.file}")
                )
            seen[doc.qualified] = doc

    def _unknown(self, doc: _Doc, mapping: Mapping[str, Any], allowed: Sequence[str], path: Path) -> None:
        for key in mapping:
            if key not in allowed:
                self.problems.append(
                    doc.problem((*path, key), f"unknown field (known: {', '.join(allowed)})", at_key=True)
                )

    # -- attribute manifests ----------------------------------------------------------------

    def _manifest(self, doc: _Doc) -> None:
        self._unknown(doc, doc.spec, ("name", "revision", "attributes"), ("spec",))
        attributes = doc.spec.get("attributes") or {}
        if not isinstance(attributes, dict):
            self.problems.append(doc.problem(("spec", "attributes"), "must be a mapping of attribute names"))
            return
        for attr, info in attributes.items():
            path: Path = ("spec", "attributes", attr)
            type_name = info.get("valueType", info.get("value_type")) if isinstance(info, dict) else None
            try:
                self.config.manifest[str(attr)] = ValueType(type_name)
            except ValueError:
                known = ", ".join(t.value for t in ValueType if t is not ValueType.ANY)
                self.problems.append(doc.problem(path, f"unknown valueType {type_name!r} (known: {known})"))

    # -- rbac.istio.io documents ------------------------------------------------------------

    def _rbac_documents(self, role_docs: list[_Doc], binding_docs: list[_Doc]) -> None:
        roles = []
        for doc in role_docs:
            role = _rbac.service_role(doc.name, doc.namespace, doc.spec, self._reporter(doc))
            if role is not None:
                roles.append(role)
        bindings = []
        for doc in binding_docs:
            binding = _rbac.service_role_binding(doc.name, doc.namespace, doc.spec, self._reporter(doc))
            if binding is not None:
                bindings.append((binding, self._reporter(doc)))
        self.config.rbac = _rbac.policy(roles, bindings)

    def _reporter(self, doc: _Doc) -> _rbac.Report:
        return lambda path, message: self.problems.append(
            doc.problem(path, message, at_key=message.startswith(("unknown field", "'"))))

    # -- handlers ---------------------------------------------------------------------------

    def _handler(self, doc: _Doc) -> None:
        self._unknown(doc, doc.spec, ("compiledAdapter", "adapter", "params", "connection"), ("spec",))
        adapter_name = doc.spec.get("compiledAdapter", doc.spec.get("adapter"))
        if not isinstance(adapter_name, str):
            self.problems.append(doc.problem(("spec",), "spec.compiledAdapter is required"))
            return
        if adapter_name == _attrgen.ADAPTER:
            self._generator(doc)
            return
        try:
            adapter = self.registry.get(adapter_name)
        except UnknownAdapter as exc:
            self.problems.append(doc.problem(("spec", "compiledAdapter"), exc.message))
            return
        raw = doc.spec.get("params") or {}
        if not isinstance(raw, dict):
            self.problems.append(doc.problem(("spec", "params"), "params must be a mapping"))
            return
        try:
            params = adapter.parse_params(raw)
        except ParamsError as exc:
            for sub_path, message in exc.problems:
                path: Path = ("spec", "params", *_split_path(sub_path))
                self.problems.append(doc.problem(path, message, at_key=message.startswith("unknown field")))
            return
        if isinstance(adapter, UsesRbacPolicy):
            params = adapter.with_rbac_policy(params, self.config.rbac)
            # The handler's identity includes the roles, so a role change rebuilds it.
            raw = {**raw, "$rbacPolicy": self.config.rbac.fingerprint()}
        self.config.handlers[doc.qualified] = CompiledHandler(doc.qualified, adapter_name, adapter, params, raw)
        self.invalid.discard(doc.qualified)

    def _generator(self, doc: _Doc) -> None:
        raw = doc.spec.get("params") or {}
        if not isinstance(raw, dict):
            self.problems.append(doc.problem(("spec", "params"), "params must be a mapping"))
            return
        problems = _attrgen.param_problems(raw)
        for key, message in problems:
            self.problems.append(doc.problem(("spec", "params", key), message, at_key=message.startswith("unknown")))
        if not problems:
            self.generators[doc.qualified] = doc
            self.invalid.discard(doc.qualified)

    # -- instances --------------------------------------------------------------------------

    def _instance(self, doc: _Doc) -> None:
        self._unknown(doc, doc.spec, ("compiledTemplate", "template", "params", "attributeBindings"), ("spec",))
        template_name = doc.spec.get("compiledTemplate", doc.spec.get("template"))
        template = TEMPLATES.get(template_name) if isinstance(template_name, str) else None
        if template is None:
            known = ", ".join(TEMPLATES)
            self.problems.append(
                doc.problem(("spec", "compiledTemplate"), f"unknown template {template_name!r} (known: {known})")
            )
            return
        raw = doc.spec.get("params") or {}
        if not isinstance(raw, dict):
            self.problems.append(doc.problem(("spec", "params"), "params must be a mapping"))
            return
        before = len(self.problems)
        fields = self._fields(doc, template.fields, raw, ("spec", "params"))
        self._bindings(doc, template)
        if len(self.problems) > before:
            return
        schema = InstanceSchema(
            name=doc.qualified,
            template=template.name,
            dimension_names=tuple(fields.get("dimensions", {})),
            monitored_resource_type=self._constant_string(doc, fields, "monitored_resource_type"),
            monitored_resource_dimension_names=tuple(fields.get("monitored_resource_dimensions", {})),
            params=raw,
        )
        self.config.instances[doc.qualified] = CompiledInstance(doc.qualified, template, fields, schema)
        self.invalid.discard(doc.qualified)

    def _bindings(self, doc: _Doc, template: Template) -> None:
        """``attributeBindings`` (attribute: expression over ``$out.<output>``) of an attribute generator."""
        bindings = doc.spec.get("attributeBindings")
        if bindings is None:
            return
        path: Path = ("spec", "attributeBindings")
        if template.variety is not Variety.ATTRIBUTES:
            self.problems.append(doc.problem(path, f"template {template.name!r} generates no attributes to bind"))
            return
        if not isinstance(bindings, dict):
            self.problems.append(doc.problem(path, "must be a mapping of attribute names to expressions"))
            return
        outputs = {**self.config.manifest, **_attrgen.outputs_manifest()}
        for attribute, raw in bindings.items():
            here = (*path, attribute)
            wanted = self.config.manifest.get(str(attribute))
            if wanted is None:
                self.problems.append(doc.problem(here, f"unknown attribute {attribute!r}", at_key=True))
                continue
            text = str(raw).replace(_attrgen.OUT, _attrgen.OUT_ATTRIBUTE_PREFIX)
            try:
                expression = compile_expression(text, outputs)
            except ExpressionError as exc:
                message = exc.message.replace(_attrgen.OUT_ATTRIBUTE_PREFIX, _attrgen.OUT)
                self.problems.append(doc.problem(here, f"{message} in {raw!r}", offset=exc.position))
                continue
            if not _assignable(expression.type, wanted):
                self.problems.append(
                    doc.problem(here, f"expression {raw!r} has type {expression.type.value}, want {wanted.value}")
                )

    def _fields(self, doc: _Doc, spec: Fields, raw: Mapping[str, Any], path: Path) -> CompiledFields:
        out: CompiledFields = {}
        for given_key, value in raw.items():
            key = CAMEL_ALIASES.get(given_key, given_key)
            here = (*path, given_key)
            field_spec = spec.get(key)
            if field_spec is None:
                self.problems.append(doc.problem(here, f"unknown field (known: {', '.join(spec)})", at_key=True))
            elif isinstance(field_spec, dict):
                if isinstance(value, dict):
                    out[key] = self._fields(doc, field_spec, value, here)
                else:
                    self.problems.append(doc.problem(here, "must be a mapping"))
            elif field_spec.kind is FieldKind.EXPRESSION_MAP:
                if not isinstance(value, dict):
                    self.problems.append(doc.problem(here, "must be a mapping of names to expressions"))
                    continue
                compiled = {str(k): self._expression(doc, field_spec, v, (*here, k)) for k, v in value.items()}
                out[key] = {k: e for k, e in compiled.items() if e is not None}
            else:
                expression = self._expression(doc, field_spec, value, here)
                if expression is not None:
                    out[key] = expression
        return out

    def _expression(self, doc: _Doc, spec: Field, raw: Any, path: Path) -> Expression | None:
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, (int, float, str)):
            text = str(raw)
        else:
            self.problems.append(doc.problem(path, "must be an expression (a string)"))
            return None
        try:
            expression = compile_expression(text, self.config.manifest)
        except ExpressionError as exc:
            self.problems.append(doc.problem(path, f"{exc.message} in {text!r}", offset=exc.position))
            return None
        if not _assignable(expression.type, spec.type):
            self.problems.append(
                doc.problem(path, f"expression {text!r} has type {expression.type.value}, want {spec.type.value}")
            )
            return None
        return expression

    def _constant_string(self, doc: _Doc, fields: CompiledFields, key: str) -> str:
        expression = fields.get(key)
        if expression is None:
            return ""
        if not expression.constant:
            self.problems.append(doc.problem(("spec", "params", key), "must be a constant expression"))
            return ""
        return str(expression.evaluate({}))

    # -- rules ------------------------------------------------------------------------------

    def _rule(self, doc: _Doc) -> None:
        allowed = ("match", "actions", "requestHeaderOperations", "responseHeaderOperations", "sampling")
        self._unknown(doc, doc.spec, allowed, ("spec",))
        match: Expression | None = None
        text = doc.spec.get("match", "")
        if text not in ("", None, True, "true"):
            match = self._expression(doc, Field(FieldKind.EXPRESSION, ValueType.BOOL), text, ("spec", "match"))
        actions: list[CompiledAction] = []
        raw_actions = doc.spec.get("actions") or []
        if not isinstance(raw_actions, list):
            self.problems.append(doc.problem(("spec", "actions"), "must be a list"))
            raw_actions = []
        for index, raw in enumerate(raw_actions):
            action = self._action(doc, raw, ("spec", "actions", index))
            if action is not None:
                actions.append(action)
        self.config.rules.append(CompiledRule(doc.qualified, match, actions))

    def _action(self, doc: _Doc, raw: Any, path: Path) -> CompiledAction | None:
        if not isinstance(raw, dict):
            self.problems.append(doc.problem(path, "an action must be a mapping"))
            return None
        self._unknown(doc, raw, ("handler", "instances", "name"), path)
        handler_ref = raw.get("handler")
        refs = raw.get("instances") or []
        if not isinstance(refs, list):
            self.problems.append(doc.problem((*path, "instances"), "must be a list of instance names"))
            refs = []
        generator = self._generator_named(handler_ref, doc.namespace)
        if generator is not None:
            self._generator_action(doc, generator, refs, path)
            return None
        handler = self._resolve(doc, handler_ref, "handler", self.config.handlers, (*path, "handler"))
        instances = []
        for index, ref in enumerate(refs):
            instance = self._resolve(doc, ref, "instance", self.config.instances, (*path, "instances", index))
            if instance is None:
                continue
            if handler is not None and instance.template.name not in handler.adapter.templates:
                serves = ", ".join(sorted(handler.adapter.templates)) or "nothing"
                self.problems.append(
                    doc.problem(
                        (*path, "instances", index),
                        f"handler {handler.name} (adapter {handler.adapter_name}) does not serve template "
                        f"{instance.template.name!r} (serves: {serves})",
                    )
                )
                continue
            instances.append(instance)
        if handler is None:
            return None
        return CompiledAction(handler, instances, str(raw.get("name", "")))

    def _generator_named(self, ref: Any, namespace: str) -> str | None:
        if not isinstance(ref, str) or not ref:
            return None
        return next((c for c in _candidates(ref, "handler", namespace) if c in self.generators), None)

    def _generator_action(self, doc: _Doc, generator: str, refs: list[Any], path: Path) -> None:
        """Check an action naming a kubernetesenv handler; it is counted for the warning, not built."""
        for index, ref in enumerate(refs):
            here = (*path, "instances", index)
            instance = self._resolve(doc, ref, "instance", self.config.instances, here)
            if instance is not None and instance.template.variety is not Variety.ATTRIBUTES:
                self.problems.append(
                    doc.problem(here, f"handler {generator} ({_attrgen.ADAPTER}) does not serve template "
                                      f"{instance.template.name!r} (serves: kubernetes)")
                )
        self.generator_actions[generator] = self.generator_actions.get(generator, 0) + 1

    def _resolve(self, doc: _Doc, ref: Any, kind: str, table: Mapping[str, Any], path: Path) -> Any:
        if not isinstance(ref, str) or not ref:
            self.problems.append(doc.problem(path, f"{kind} reference must be a non-empty string"))
            return None
        for candidate in _candidates(ref, kind, doc.namespace):
            if candidate in table:
                return table[candidate]
        broken = [c for c in _candidates(ref, kind, doc.namespace) if c in self.invalid]
        if broken:
            self.problems.append(doc.problem(path, f"{kind} {broken[0]} is invalid (see its errors)"))
            return None
        known = ", ".join(sorted(table)) or "none"
        self.problems.append(doc.problem(path, f"{kind} {ref!r} not found (valid {kind}s: {known})"))
        return None


def _is_other_api_group(api: Any, kind: Any) -> bool:
    """A Kubernetes object of another API group (a DestinationRule, a ConfigMap): Helm and kubectl
    output mixes them with Mixer config, and Mixer ignored them. Kubernetes kinds are CamelCase and
    Mixer's lowercase, so a lowercase kind under a wrong apiVersion is a mistaken Mixer document.
    Of rbac.istio.io/v1alpha1 the rbac adapter reads ServiceRole and ServiceRoleBinding; its
    (Cluster)RbacConfig configured Envoy's RBAC filter through Pilot, so it is skipped like others."""
    if api == RBAC_API_VERSION:
        return kind in RBAC_PILOT_KINDS
    return (
        isinstance(api, str)
        and api.rpartition("/")[0] not in MIXER_API_GROUPS
        and isinstance(kind, str)
        and kind[:1].isupper()
    )


def _candidates(ref: str, kind: str, namespace: str) -> list[str]:
    """Fully qualified names a reference may mean: name, name.namespace, name.kind.namespace, or
    Mixer's legacy name.<template-or-adapter> (e.g. ``requestcount.metric``)."""
    parts = ref.split(".")
    if len(parts) == 1:
        return [f"{ref}.{kind}.{namespace}"]
    if len(parts) == 2:
        name, second = parts
        return [f"{name}.{kind}.{second}", f"{name}.{kind}.{namespace}"]
    # name.kind.namespace: the middle part is the kind (or a legacy template/adapter kind name).
    return [f"{parts[0]}.{kind}.{'.'.join(parts[2:])}"]


def _assignable(actual: ValueType, wanted: ValueType) -> bool:
    if wanted is ValueType.ANY or actual is wanted:
        return True
    return actual in STRING_LIKE and wanted in STRING_LIKE


# A params path: "a.b[3].c", where a bracketed key that is no index may hold dots ("m[x.instance.ns].kind").
_PATH_PART = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def _split_path(text: str) -> Path:
    parts: list[str | int] = []
    for match in _PATH_PART.finditer(text):
        bracketed, plain = match.groups()
        if bracketed is None:
            parts.append(plain)
        else:
            parts.append(int(bracketed) if bracketed.isdigit() else bracketed)
    return tuple(parts)
