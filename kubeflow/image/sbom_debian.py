"""Adds an image's Debian packages to its CycloneDX SBOM (kubeflow/Dockerfile, stage sbom).

Tested in the image: tests/image/test_image.py.

    python sbom_debian.py SBOM [--root DIR] [--validate]

SBOM is the CycloneDX JSON that ``cyclonedx-py environment`` wrote for the image's Python
packages; it is rewritten in place with one component per Debian package installed in
the dpkg database under DIR (default /; ``dpkg-query --admindir DIR/var/lib/dpkg``):
name, version, ``purl`` ``pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-N`` (the
purl spec's deb type; distro from DIR/etc/os-release), type ``library`` (section libs,
libdevel or oldlibs, or a name starting with lib) or ``application``, the source package
as the property ``debian:source`` where it differs, and a dependency entry listing the
installed packages its Depends and Pre-Depends name (the first installed alternative;
virtual packages are left out). Components are sorted: the same database gives the same
file. --validate checks the result against CycloneDX's JSON schema of its specVersion
(cyclonedx-python-lib, installed in the sbom stage) and fails on any error.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.parse

FIELDS = ["db:Status-Abbrev", "Package", "Version", "Architecture", "Section",
          "source:Package", "Depends", "Pre-Depends"]
LIBRARY_SECTIONS = {"libs", "libdevel", "oldlibs"}


def _quote(value: str) -> str:
    """Percent-encoding of a purl version or qualifier value (':' stays, as in the spec)."""
    return urllib.parse.quote(value, safe="").replace("%3A", ":")


def installed(root: str) -> list[dict]:
    """The packages dpkg lists as installed ('ii') under ``root``."""
    admindir = os.path.join(root, "var", "lib", "dpkg")
    if not os.path.isfile(os.path.join(admindir, "status")):
        sys.exit(f"no dpkg database at {admindir} (--root names the image's root)")
    listing = subprocess.run(
        ["dpkg-query", "--admindir", admindir, "-W",
         "-f", "\t".join(f"${{{field}}}" for field in FIELDS) + "\n"],
        capture_output=True, text=True, check=True).stdout
    packages = []
    for line in listing.splitlines():
        values = dict(zip(FIELDS, line.split("\t")))
        if values["db:Status-Abbrev"].strip() == "ii":
            packages.append(values)
    if not packages:
        sys.exit(f"dpkg-query lists no installed package in {admindir}")
    return sorted(packages, key=lambda p: (p["Package"], p["Architecture"]))


def distro(root: str) -> str | None:
    """'debian-12' from ROOT/etc/os-release (None where it names no Debian release)."""
    try:
        with open(os.path.join(root, "etc", "os-release"), encoding="utf-8") as f:
            release = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except FileNotFoundError:
        return None
    name, version = (release.get(key, "").strip('"') for key in ("ID", "VERSION_ID"))
    return f"debian-{version}" if name == "debian" and version else None


def purl(package: dict, release: str | None) -> str:
    qualifiers = [("arch", package["Architecture"])] + ([("distro", release)] if release
                                                       else [])
    return (f"pkg:deb/debian/{_quote(package['Package'])}@{_quote(package['Version'])}?"
            + "&".join(f"{key}={_quote(value)}" for key, value in qualifiers))


def _depends(package: dict, refs: dict) -> list[str]:
    """bom-refs of the installed packages named by Depends and Pre-Depends."""
    found = []
    for field in ("Pre-Depends", "Depends"):
        for group in filter(None, (g.strip() for g in package[field].split(","))):
            for alternative in group.split("|"):
                name = re.split(r"[\s(:]", alternative.strip(), maxsplit=1)[0]
                if name in refs:
                    found.append(refs[name])
                    break
    return sorted(set(found) - {refs[package["Package"]]})


def components(root: str) -> tuple[list, list]:
    """CycloneDX components and dependency entries of the installed Debian packages."""
    packages, release = installed(root), distro(root)
    refs = {}
    for package in packages:
        refs.setdefault(package["Package"], purl(package, release))
    listed, dependencies = [], []
    for package in packages:
        ref = purl(package, release)
        name = package["Package"]
        component = {
            "type": "library" if package["Section"] in LIBRARY_SECTIONS
            or name.startswith("lib") else "application",
            "bom-ref": ref, "name": name, "version": package["Version"], "purl": ref}
        source = package["source:Package"]
        if source and source != name:
            component["properties"] = [{"name": "debian:source", "value": source}]
        listed.append(component)
        dependencies.append({"ref": ref, "dependsOn": _depends(package, refs)})
    return listed, dependencies


def validate(text: str, spec_version: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    version = SchemaVersion.from_version(spec_version)
    error = JsonStrictValidator(version).validate_str(text)
    if error:
        lines = str(error).strip().splitlines()  # the reason, and where (not the schema)
        where = [line.rstrip(":") for line in lines if line.startswith("On instance")]
        sys.exit(f"the merged SBOM is not valid CycloneDX {spec_version}: {lines[0]} "
                 f"{' '.join(where)}")


def main(argv: list | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sbom")
    parser.add_argument("--root", default="/")
    parser.add_argument("--validate", action="store_true")
    args = parser.parse_args(argv)
    with open(args.sbom, encoding="utf-8") as f:
        sbom = json.load(f)
    if sbom.get("bomFormat") != "CycloneDX":
        sys.exit(f"{args.sbom} is not a CycloneDX JSON document")
    listed, dependencies = components(args.root)
    known = {c.get("bom-ref") for c in sbom.get("components", [])}
    if known & {c["bom-ref"] for c in listed}:
        sys.exit(f"{args.sbom} already lists Debian packages")
    sbom.setdefault("components", []).extend(listed)
    sbom.setdefault("dependencies", []).extend(dependencies)
    text = json.dumps(sbom, indent=2, sort_keys=True) + "\n"
    if args.validate:
        validate(text, sbom["specVersion"])
    with open(args.sbom, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{args.sbom}: {len(listed)} Debian packages added", file=sys.stderr)


if __name__ == "__main__":
    main()
