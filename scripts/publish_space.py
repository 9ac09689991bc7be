"""Publish this repository to a Hugging Face Space (Gradio SDK; the Space reads README.md's front matter).

    python scripts/publish_space.py --repo-id USER/interir-explorer            # create or update
    python scripts/publish_space.py --dry-run                                  # show what would go, upload nothing

What goes: the git-tracked files (``git ls-files``) that exist in the working tree, minus local
data, runs, environments and caches (``data_local/``, ``runs/``, ``.venv/``, ``__pycache__/``, …,
see ``EXCLUDE``). Binaries (safetensors, npz, png, …, or any file with a NUL byte) go through
the Hub's large-file storage: a ``.gitattributes`` that marks them so is uploaded first, then
the selection with ``HfApi.upload_folder`` (which stores such files through LFS/Xet).
``--prune`` also deletes files of the Space that are no longer in the selection.

The token comes from ``HF_TOKEN`` or a saved ``hf auth login``; it is never written anywhere.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: left out even when tracked: local data, runs, a running stage's milestones (to continue training,
#: not served), environments, caches, CI plumbing
EXCLUDE = ("data_local/*", "runs/*", "milestones/*", ".venv/*", "venv/*", "*/__pycache__/*", "__pycache__/*", "*.pyc",
           ".pytest_cache/*", ".gradio/*", ".device/*", ".whl/*", "build/*", "dist/*", "tmp/*", "*.egg-info/*",
           "*.log", ".ci/*", ".git/*", ".gitattributes")
#: stored through large-file storage whatever their size (plus anything with a NUL byte)
BINARY_EXT = (".safetensors", ".npz", ".npy", ".pt", ".pth", ".bin", ".png", ".jpg", ".jpeg", ".webp",
              ".gif", ".bmp", ".tif", ".tiff", ".pdf", ".zip", ".gz", ".tar", ".mp4", ".onnx", ".h5")
LFS_RULE = "filter=lfs diff=lfs merge=lfs -text"


class PublishError(Exception):
    """A problem to report in one line."""


@dataclass(frozen=True)
class Entry:
    path: str      # POSIX path relative to the repository root
    size: int
    lfs: bool


def tracked_files(root: Path) -> list[str]:
    """``git ls-files`` of ``root`` (tracked paths, POSIX, sorted)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True, capture_output=True).stdout
    except FileNotFoundError:
        raise PublishError("git is not installed: the file selection starts from `git ls-files`") from None
    except subprocess.CalledProcessError as exc:
        msg = exc.stderr.decode(errors="replace").strip().splitlines()
        raise PublishError(f"{root} is not a git checkout ({msg[-1] if msg else 'git ls-files failed'})") from None
    return sorted(p for p in out.decode().split("\0") if p)


def excluded(path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, pat) for pat in EXCLUDE)


def is_binary(path: Path) -> bool:
    if path.suffix.lower() in BINARY_EXT:
        return True
    with path.open("rb") as f:
        return b"\0" in f.read(8192)


def select_files(root: Path) -> list[Entry]:
    """The files to publish (see the module docstring)."""
    out = []
    for rel in tracked_files(root):
        p = root / rel
        if excluded(rel) or p.is_symlink() or not p.is_file():  # deleted, a submodule or a link
            continue
        out.append(Entry(rel, p.stat().st_size, is_binary(p)))
    return out


def gitattributes(entries: list[Entry]) -> str:
    """LFS rules for every binary extension in the selection, and for each binary without one."""
    lines = ["# Binaries go through the Hub's large-file storage (written by scripts/publish_space.py)"]
    exts = sorted({Path(e.path).suffix.lower() for e in entries if e.lfs and Path(e.path).suffix.lower() in BINARY_EXT})
    lines += [f"*{ext} {LFS_RULE}" for ext in exts]
    lines += [f"{e.path} {LFS_RULE}" for e in entries if e.lfs and Path(e.path).suffix.lower() not in BINARY_EXT]
    return "\n".join(lines) + "\n"


def describe(entries: list[Entry]) -> str:
    total = sum(e.size for e in entries)
    lfs = [e for e in entries if e.lfs]
    lines = [f"{'LFS' if e.lfs else '   '} {e.size:>10,d}  {e.path}" for e in entries]
    lines.append(f"{len(entries)} files, {total / 1e6:.1f} MB; {len(lfs)} through large-file storage "
                 f"({sum(e.size for e in lfs) / 1e6:.1f} MB); plus a generated .gitattributes")
    return "\n".join(lines)


def publish(root: Path, entries: list[Entry], repo_id: str, private: bool, prune: bool, message: str) -> str:
    """Create the Space if needed and upload the selection; returns the Space's URL."""
    from huggingface_hub import HfApi, get_token

    if not (os.environ.get("HF_TOKEN") or get_token()):
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = HfApi()
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    attrs = gitattributes(entries)
    api.upload_file(path_or_fileobj=attrs.encode(), path_in_repo=".gitattributes", repo_id=repo_id,
                    repo_type="space", commit_message="LFS rules for the binaries")
    with tempfile.TemporaryDirectory(prefix="interir-space-") as tmp:
        stage = Path(tmp)
        for e in entries:  # stage exactly the selection (upload_folder uploads a whole folder)
            (stage / e.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / e.path, stage / e.path)
        (stage / ".gitattributes").write_text(attrs)
        api.upload_folder(folder_path=stage, repo_id=repo_id, repo_type="space", commit_message=message,
                          delete_patterns=["*"] if prune else None)
    return str(url)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Publish the repository to a Hugging Face Space.")
    ap.add_argument("--repo-id", help="the Space, USER/NAME (required unless --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="print the file selection, upload nothing")
    ap.add_argument("--json", action="store_true", help="with --dry-run: the selection as JSON")
    ap.add_argument("--private", action="store_true", help="create the Space private")
    ap.add_argument("--prune", action="store_true", help="delete Space files that are not in the selection")
    ap.add_argument("--message", default="Publish InterIR Explorer", help="commit message")
    ap.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        entries = select_files(root)
        if not any(e.path == "app.py" for e in entries):
            raise PublishError(f"no tracked app.py in {root}: nothing a Space could start")
        if args.dry_run:
            if args.json:
                print(json.dumps({"files": [e.__dict__ for e in entries], "gitattributes": gitattributes(entries)}))
            else:
                print(describe(entries))
                print("dry run: nothing uploaded")
            return 0
        if not args.repo_id or args.repo_id.count("/") != 1:
            raise PublishError("give the Space as --repo-id USER/NAME (or use --dry-run)")
        print(describe(entries).splitlines()[-1])
        print(f"published: {publish(root, entries, args.repo_id, args.private, args.prune, args.message)}")
        return 0
    except PublishError as exc:
        print(f"publish_space: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the Hub's errors, in one line
        print(f"publish_space: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
