"""The profile validator: base FHIR R4 + the StructureDefinitions in profiles/ + Questionnaires.

    validator = Validator.load(settings)
    result = validator.validate(resource_dict)            # profiles the resource claims
    result = validator.validate(resource_dict, profile=url)
    result = validator.validate_bytes(raw_bytes)          # JSON or XML, never raises
    result.valid, result.issues, result.outcome()

Everything is compiled at load (nodes, slices, FHIRPath invariants, Questionnaires); a
configuration error in the project's own files fails then, naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fhir_bridge.config import Settings
from fhir_bridge.errors import BridgeError, ConfigurationError, FhirPathError
from fhir_bridge.fhir.model import Constraint, StructureModel
from fhir_bridge.fhir.outcome import Issue, operation_outcome, sort_issues
from fhir_bridge.fhir.package import ConformancePackage, load_package
from fhir_bridge.fhirpath import compile_expression
from fhir_bridge.terminology import Terminology
from fhir_bridge.validation.nodes import BaseCompiler, Invariant, Node
from fhir_bridge.validation.primitives import primitive_checks
from fhir_bridge.validation.profiles import ProfileCompiler
from fhir_bridge.validation.questionnaire import CompiledQuestionnaire, QuestionnaireChecker, compile_questionnaire
from fhir_bridge.validation.sure_invariants import sure_check
from fhir_bridge.validation.walker import Context, Walker

RESPONSE_PROFILE_EXT = "https://fhir-bridge.example.org/StructureDefinition/questionnaire-response-profile"


@dataclass
class ValidationResult:
    resource: dict | None
    issues: list[Issue]
    profiles: list[str] = field(default_factory=list)
    unevaluated: set[str] = field(default_factory=set)  # invariants the engine could not run

    @property
    def valid(self) -> bool:
        return not any(i.is_error for i in self.issues)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.is_error]

    def outcome(self) -> dict:
        return operation_outcome(self.issues)


class Validator:
    def __init__(self, model: StructureModel, terminology: Terminology, package: ConformancePackage,
                 *, report_best_practice: bool = False):
        self.model = model
        self.terminology = terminology
        self.package = package
        self.report_best_practice = report_best_practice
        self.uncompiled: dict[str, str] = {}  # invariant key -> why the engine could not compile it
        self.base = BaseCompiler(model, primitive_checks(model), self._compile_invariant)
        self.extension_nodes: dict[str, Node] = {}
        self.profile_nodes: dict[str, Node] = {}
        self._profiles = ProfileCompiler(self.base, self._compile_invariant, self._extension_profile)
        self._compiling: set[str] = set()
        self._compile_profiles()
        self.questionnaires: dict[str, CompiledQuestionnaire] = {}
        self.response_profiles: dict[str, str] = {}  # Questionnaire canonical -> profile its responses must meet
        for q in package.of_type("Questionnaire"):
            self._add_questionnaire(q)
        self.walker = Walker(terminology, self.extension_nodes, self._resource_nodes, self.base.node("Element"))
        self.checker = QuestionnaireChecker(terminology)

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, settings: Settings | None = None) -> "Validator":
        settings = settings or Settings.from_env()
        model = StructureModel.load(settings.profiles_dir / "r4-core" / "structures.json")
        terminology = Terminology.load(settings.terminology_dir)
        package = load_package(settings.profiles_dir, settings.terminology_dir)
        return cls(model, terminology, package, report_best_practice=settings.report_best_practice)

    def _compile_invariant(self, c: Constraint, source: str) -> Invariant | None:
        if c.best_practice and not self.report_best_practice:
            return None
        severity = "information" if c.best_practice else c.severity
        try:
            compiled = compile_expression(c.expression)
        except FhirPathError as exc:
            self.uncompiled[c.key] = exc.message
            return Invariant(c.key, severity, c.human, c.expression, None, source)
        return Invariant(c.key, severity, c.human, c.expression, compiled.holds, source, compiled.absence_guard(),
                         sure_check(c.expression), compiled.reads_only_focus())

    def _structure_definitions(self) -> list[dict]:
        return [sd for sd in self.package.of_type("StructureDefinition") if sd.get("derivation") == "constraint"]

    def _compile_profiles(self) -> None:
        for sd in self._structure_definitions():
            if sd["type"] == "Extension":
                self._extension_profile(sd["url"])
        for sd in self._structure_definitions():
            if sd["type"] != "Extension":
                self.profile_nodes[sd["url"]] = self._compile(sd)

    def _compile(self, sd: dict) -> Node:
        where = self.package.where_from(sd)
        try:
            return self._profiles.compile(sd, where)
        except ConfigurationError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where}: cannot compile {sd.get('url')}: {exc!r}") from exc

    def _extension_profile(self, url: str) -> Node | None:
        node = self.extension_nodes.get(url)
        if node is not None:
            return node
        sd = self.package.resolve(url, "StructureDefinition")
        if sd is None:
            return None
        if url in self._compiling:
            raise ConfigurationError(f"{self.package.where_from(sd)}: extension {url} refers to itself")
        self._compiling.add(url)
        try:
            node = self._compile(sd)
        finally:
            self._compiling.discard(url)
        self.extension_nodes[url] = node
        return node

    def _add_questionnaire(self, q: dict) -> None:
        compiled = compile_questionnaire(q, compile_expression, self.terminology)
        keys = [q["url"]] + ([f"{q['url']}|{q['version']}"] if q.get("version") else [])
        for key in keys:
            self.questionnaires[key] = compiled
        for ext in q.get("extension", ()):
            if ext.get("url") == RESPONSE_PROFILE_EXT:
                self.response_profiles[q["url"]] = ext["valueCanonical"]

    # -- which definitions apply -------------------------------------------------------------------
    def _claimed(self, resource: dict) -> list[str]:
        meta = resource.get("meta")
        claimed = meta.get("profile") if type(meta) is dict else None
        urls = [p for p in claimed if type(p) is str] if type(claimed) is list else []
        if resource.get("resourceType") == "QuestionnaireResponse" and type(resource.get("questionnaire")) is str:
            implied = self.response_profiles.get(resource["questionnaire"].split("|")[0])
            if implied:
                urls.append(implied)
        return list(dict.fromkeys(u.split("|")[0] for u in urls))

    def _resource_nodes(self, resource: dict) -> list[Node]:
        rtype = resource.get("resourceType")
        if rtype not in self.model.resource_types:
            return []
        nodes = [self.profile_nodes[u] for u in self._claimed(resource) if u in self.profile_nodes]
        nodes = [n for n in nodes if n.type_name == rtype]
        return nodes or [self.base.node(rtype)]

    # -- validating ------------------------------------------------------------------------------
    def validate(self, resource: object, profile: str | None = None) -> ValidationResult:
        if type(resource) is not dict:
            return ValidationResult(None, [Issue("fatal", "structure", "A FHIR resource must be a JSON object", None)])
        rtype = resource.get("resourceType")
        if type(rtype) is not str:
            return ValidationResult(resource, [Issue("fatal", "structure", "Not a FHIR resource: no resourceType", None)])
        if rtype not in self.model.resource_types:
            return ValidationResult(resource, [Issue("fatal", "not-supported", f"Unknown resource type {rtype!r}", rtype)])
        ctx = Context(resource)
        profiles = [profile.split("|")[0]] if profile else self._claimed(resource)
        nodes = []
        for url in profiles:
            node = self.profile_nodes.get(url)
            if node is None:
                ctx.add("error" if profile else "warning", "not-found",
                        f"Profile {url} is not known here: validated against the base specification only", rtype)
            elif node.type_name != rtype:
                ctx.add("error", "invalid", f"Profile {url} is for {node.type_name}, not {rtype}", rtype)
            else:
                nodes.append(node)
        for node in nodes or [self.base.node(rtype)]:
            self.walker.walk(resource, node, rtype, ctx)
        self._check_questionnaires(resource, rtype, ctx)
        return ValidationResult(resource, sort_issues(ctx.issues), [n for n in profiles if n in self.profile_nodes],
                                ctx.unevaluated)

    def _check_questionnaires(self, resource: dict, expr: str, ctx: Context) -> None:
        rtype = resource.get("resourceType")
        if rtype == "QuestionnaireResponse":
            canonical = resource.get("questionnaire")
            if type(canonical) is not str:
                return
            q = self.questionnaires.get(canonical) or self.questionnaires.get(canonical.split("|")[0])
            if q is None:
                ctx.add("warning", "not-found", f"Questionnaire {canonical} is not known here: answers not checked",
                        f"{expr}.questionnaire")
                return
            self.checker.check(resource, q, ctx, expr)
        elif rtype == "Bundle" and type(resource.get("entry")) is list:
            for i, entry in enumerate(resource["entry"]):
                if type(entry) is dict and type(entry.get("resource")) is dict:
                    outer = ctx.resource
                    ctx.resource = entry["resource"]
                    self._check_questionnaires(entry["resource"], f"{expr}.entry[{i}].resource", ctx)
                    ctx.resource = outer

    def validate_bytes(self, data: bytes, content_type: str | None = None, profile: str | None = None) -> ValidationResult:
        from fhir_bridge.fhir.codec import parse_resource_bytes

        try:
            resource = parse_resource_bytes(data, self.model, content_type)
        except BridgeError as exc:
            return ValidationResult(None, [Issue("fatal", exc.code, exc.message, exc.expression)])
        return self.validate(resource, profile)
