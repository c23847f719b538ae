#!/usr/bin/env python3
"""Render a kustomization without kubectl: the small subset deploy/k8s uses.

    python deploy/render.py deploy/k8s/overlays/single            # YAML on stdout
    python deploy/render.py deploy/k8s/overlays/postgres -o out.yaml
    python deploy/render.py deploy/k8s/overlays/single --kubectl  # prefer `kubectl kustomize`

Supported kustomization fields: ``resources`` (files and directories holding a kustomization),
``namespace``, ``images`` (name/newName/newTag/digest), ``patches`` (strategic merge, including
``$patch: delete`` of a whole object and ``null`` to drop a field; JSON 6902 with ``target``
kind/name/group/version/namespace). Anything else (generators, labels, name prefixes, ...) is
rejected loudly rather than silently ignored, so the output equals ``kubectl kustomize``'s for
what it accepts (tests/integration/test_deploy_manifests.py compares the two when kubectl is
installed). Output objects are ordered like kustomize's legacy ordering.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}

# Kinds that have no namespace (the namespace transformer leaves them alone).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CSIDriver",
    "CSINode",
    "Node",
    "VolumeAttachment",
    "ClusterIssuer",
}

# kustomize's "legacy" output order (api/resource/ordering: orderFirst / orderLast).
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]

# Strategic-merge keys for the lists this project patches (from the Kubernetes API's
# patchMergeKey tags). Lists not named here are replaced wholesale, as in kustomize.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ports": None,  # containerPort for containers, port for Services: chosen per item
}


class RenderError(Exception):
    pass


# ----------------------------------------------------------------------------------- loading
def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise RenderError(f"{directory}: no kustomization.yaml")


def _load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def _load_patch(kdir: Path, entry: dict[str, Any]) -> Any:
    if "path" in entry:
        docs = _load_yaml_docs(kdir / entry["path"])
        if len(docs) != 1:
            raise RenderError(f"{kdir / entry['path']}: expected one patch document")
        return docs[0]
    if "patch" in entry:
        return yaml.safe_load(entry["patch"])
    raise RenderError(f"{kdir}: patch entry needs `path` or `patch`")


def build(directory: str | Path) -> list[dict[str, Any]]:
    """Objects of the kustomization in ``directory``, transformed and ordered."""
    return _sort(_build(Path(directory).resolve()))


def _build(kdir: Path) -> list[dict[str, Any]]:
    kfile = _kustomization_file(kdir)
    kust = _load_yaml_docs(kfile)[0]
    unsupported = set(kust) - SUPPORTED_FIELDS
    if unsupported:
        raise RenderError(f"{kfile}: unsupported kustomization fields {sorted(unsupported)}")

    objects: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        target = kdir / res
        objects.extend(_build(target.resolve()) if target.is_dir() else _load_yaml_docs(target))
    _check_unique(objects, kfile)

    for entry in kust.get("patches", []):
        patch = _load_patch(kdir, entry)
        if isinstance(patch, list):
            if "target" not in entry:
                raise RenderError(f"{kfile}: a JSON 6902 patch needs a `target`")
            matched = [o for o in objects if _matches(o, entry["target"])]
            if not matched:
                raise RenderError(f"{kfile}: patch target {entry['target']} matches nothing")
            for obj in matched:
                _json6902(obj, patch)
        else:
            objects = _strategic_patch(objects, patch, entry.get("target"), kfile)

    for image in kust.get("images", []):
        for obj in objects:
            _set_image(obj, image)

    if "namespace" in kust:
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = kust["namespace"]
    return objects


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")


def _check_unique(objects: list[dict[str, Any]], where: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        if _key(obj) in seen:
            raise RenderError(f"{where}: duplicate object {_key(obj)}")
        seen.add(_key(obj))


def _group_version(obj: dict[str, Any]) -> tuple[str, str]:
    api = obj.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    return group, version


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    unsupported = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unsupported:
        raise RenderError(f"unsupported patch target selectors {sorted(unsupported)}")
    group, version = _group_version(obj)
    meta = obj.get("metadata", {})
    checks = {
        "group": group,
        "version": version,
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace", ""),
    }
    return all(checks[k] == v for k, v in target.items())


# ------------------------------------------------------------------------- strategic merge
def _strategic_patch(
    objects: list[dict[str, Any]],
    patch: dict[str, Any],
    target: dict[str, Any] | None,
    where: Path,
) -> list[dict[str, Any]]:
    if target is None:
        meta = patch.get("metadata", {})
        target = {"kind": patch.get("kind"), "name": meta.get("name")}
        group, version = _group_version(patch)
        target.update({"group": group, "version": version})
        if "namespace" in meta:
            target["namespace"] = meta["namespace"]
    matched = [o for o in objects if _matches(o, target)]
    if not matched:
        raise RenderError(f"{where}: patch target {target} matches nothing")
    if patch.get("$patch") == "delete":
        return [o for o in objects if not any(o is m for m in matched)]
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
    body["metadata"] = {
        k: v for k, v in patch.get("metadata", {}).items() if k not in ("name", "namespace")
    }
    if not body["metadata"]:
        del body["metadata"]
    for obj in matched:
        _merge_dict(obj, body)
    return objects


def _merge_dict(dst: dict[str, Any], patch: dict[str, Any]) -> None:
    directive = patch.get("$patch")
    if directive == "replace":
        dst.clear()
        dst.update({k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")})
        return
    if directive not in (None, "merge"):
        raise RenderError(f"unsupported $patch directive {directive!r}")
    for key, value in patch.items():
        if key.startswith("$"):
            if key not in ("$patch", "$retainKeys"):
                raise RenderError(f"unsupported strategic-merge directive {key}")
            continue
        if value is None:
            dst.pop(key, None)
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_dict(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list) and key in MERGE_KEYS:
            dst[key] = _merge_list(dst[key], value, key)
        else:
            dst[key] = _strip_directives(copy.deepcopy(value))


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _merge_key(list_name: str, item: dict[str, Any]) -> str:
    key = MERGE_KEYS[list_name]
    if key is None:  # ports
        key = "containerPort" if "containerPort" in item else "port"
    return key


def _merge_list(dst: list[Any], patch: list[Any], list_name: str) -> list[Any]:
    if not all(isinstance(i, dict) for i in dst + patch):
        return copy.deepcopy(patch)
    result = dst
    new_items = []
    for item in patch:
        key = _merge_key(list_name, item)
        if key not in item:
            raise RenderError(f"strategic-merge item in `{list_name}` lacks `{key}`: {item}")
        found = next((d for d in result if d.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            result = [d for d in result if d.get(key) != item[key]]
        elif found is not None:
            _merge_dict(found, item)
        else:
            new_items.append(_strip_directives(copy.deepcopy(item)))
    # kustomize (kyaml) puts list items that only exist in the patch first.
    return new_items + result


# ---------------------------------------------------------------------------- JSON 6902
def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _json6902(obj: dict[str, Any], ops: Iterable[dict[str, Any]]) -> None:
    for op in ops:
        parts = _pointer(op["path"])
        parent, last = _walk(obj, parts[:-1]), parts[-1]
        kind = op["op"]
        if kind == "add":
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                else:
                    parent.insert(int(last), value)
            else:
                parent[last] = value
        elif kind == "replace":
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(op["value"])
            else:
                if last not in parent:
                    raise RenderError(f"replace: {op['path']} does not exist")
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise RenderError(f"unsupported JSON 6902 op {kind!r}")


# ------------------------------------------------------------------------------- images
def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj.get("kind") == "Pod":
        return [spec]
    if obj.get("kind") == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    template = spec.get("template", {}).get("spec")
    return [template] if template else []


def _split_image(image: str) -> tuple[str, str]:
    """``name[:tag][@digest]`` -> (name, rest) where rest keeps ':'/'@'."""
    at = image.find("@")
    base, digest = (image, "") if at < 0 else (image[:at], image[at:])
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        return base[:colon], base[colon:] + digest
    return base, digest


def _set_image(obj: dict[str, Any], image: dict[str, Any]) -> None:
    for pod_spec in _pod_specs(obj):
        for group in ("initContainers", "containers"):
            for container in pod_spec.get(group, []):
                name, rest = _split_image(container.get("image", ""))
                if name != image["name"]:
                    continue
                name = image.get("newName", name)
                if "digest" in image:
                    rest = "@" + image["digest"]
                elif "newTag" in image:
                    rest = ":" + str(image["newTag"])
                container["image"] = name + rest


# -------------------------------------------------------------------------------- output
def _sort(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def rank(obj: dict[str, Any]) -> tuple[int, str, str, str]:
        kind = obj.get("kind", "")
        if kind in ORDER_FIRST:
            pos = ORDER_FIRST.index(kind)
        elif kind in ORDER_LAST:
            pos = 10_000 + ORDER_LAST.index(kind)
        else:
            pos = 1_000
        # Kinds outside the lists: by their "group_version_kind" string, as kustomize does.
        group, version = _group_version(obj)
        gvk = f"{group}_{version}_{kind}" if pos == 1_000 else ""
        meta = obj.get("metadata", {})
        return (pos, gvk, meta.get("namespace", ""), meta.get("name", ""))

    return sorted(objects, key=rank)


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = (
        "|"
        if "\n" in data and not any(line != line.rstrip() for line in data.split("\n"))
        else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(
        objects,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        explicit_start=False,
        width=100,
    )


def kubectl_kustomize(directory: str | Path) -> list[dict[str, Any]] | None:
    """``kubectl kustomize DIR`` parsed, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="folder with a kustomization.yaml")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    parser.add_argument(
        "--kubectl", action="store_true", help="use `kubectl kustomize` when it is installed"
    )
    args = parser.parse_args(argv)
    try:
        objects = kubectl_kustomize(args.directory) if args.kubectl else None
        text = dump(objects if objects is not None else build(args.directory))
    except (RenderError, OSError, yaml.YAMLError, subprocess.CalledProcessError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
