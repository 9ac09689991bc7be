"""scripts/publish_space.py: which files would go to the Space (dry run, no network), the upload
calls it makes (against a recording stand-in for HfApi), and requirements.txt installing on its own."""
from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def load_script():
    spec = importlib.util.spec_from_file_location("publish_space", ROOT / "scripts" / "publish_space.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the dry run touched the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def repo(tmp_path):
    """A small git checkout with tracked, untracked, ignored-but-tracked and deleted files."""
    files = {
        "app.py": b"print('hi')\n", "README.md": b"---\nsdk: gradio\n---\n", "requirements.txt": b"numpy\n",
        "interir/__init__.py": b"", "interir/__pycache__/x.cpython-311.pyc": b"\0pyc",
        "checkpoints/m/model.safetensors": b"{}" * 100, "app/assets/ref.npz": b"PK\x03\x04",
        "docs/shot.png": b"\x89PNG\r\n", "weights.raw": b"abc\0def", "notes.txt": b"plain text\n",
        "data_local/clean/a.png": b"\x89PNG", "runs/r1/log.csv": b"step,loss\n",
        "milestones/r1-500/model.safetensors": b"{}" * 100, ".venv/lib/site.py": b"",
        ".ci/run": b"#!/bin/sh\n", "gone.py": b"",
    }
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", *files], check=True)
    (tmp_path / "gone.py").unlink()                       # tracked but deleted
    (tmp_path / "untracked.py").write_text("x = 1\n")     # never added
    return tmp_path


EXPECTED = ["README.md", "app.py", "app/assets/ref.npz", "checkpoints/m/model.safetensors", "docs/shot.png",
            "interir/__init__.py", "notes.txt", "requirements.txt", "weights.raw"]


def test_dry_run_selects_tracked_files_without_local_data(repo, no_network, capsys):
    mod = load_script()
    assert mod.main(["--dry-run", "--json", "--root", str(repo)]) == 0
    out = json.loads(capsys.readouterr().out)
    files = {f["path"]: f for f in out["files"]}
    assert sorted(files) == EXPECTED
    assert {p for p, f in files.items() if f["lfs"]} == {"app/assets/ref.npz", "checkpoints/m/model.safetensors",
                                                         "docs/shot.png", "weights.raw"}
    assert files["checkpoints/m/model.safetensors"]["size"] == 200
    attrs = out["gitattributes"].splitlines()
    for rule in ("*.safetensors filter=lfs", "*.npz filter=lfs", "*.png filter=lfs", "weights.raw filter=lfs"):
        assert any(line.startswith(rule) for line in attrs), rule
    assert not any(line.startswith("*.py") for line in attrs)
    # the human-readable dry run says it uploaded nothing
    assert mod.main(["--dry-run", "--root", str(repo)]) == 0
    text = capsys.readouterr().out
    assert "9 files" in text and "4 through large-file storage" in text and "nothing uploaded" in text


def test_dry_run_on_this_repository(no_network):
    mod = load_script()
    entries = {e.path: e for e in mod.select_files(ROOT)}
    tracked = set(mod.tracked_files(ROOT))
    assert {"app.py", "README.md", "requirements.txt", "interir/__init__.py"} <= set(entries)
    assert set(entries) <= tracked
    assert entries["checkpoints/interir-tiny/model.safetensors"].lfs
    assert not any(p.startswith(("data_local/", "runs/", ".venv/", ".ci/")) or "__pycache__" in p for p in entries)


def test_errors_are_one_line(tmp_path, capsys):
    mod = load_script()
    assert mod.main(["--dry-run", "--root", str(tmp_path)]) == 2          # not a git checkout
    err = capsys.readouterr().err
    assert err.startswith("publish_space: error:") and "not a git checkout" in err and err.count("\n") == 1
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert mod.main(["--dry-run", "--root", str(tmp_path)]) == 2          # no app.py
    assert "no tracked app.py" in capsys.readouterr().err


def test_publish_calls_the_hub_as_documented(repo, monkeypatch, capsys):
    """create_repo(space, gradio, exist_ok), then .gitattributes, then upload_folder of exactly the selection."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))
            return f"https://example.invalid/spaces/{repo_id}"

        def upload_file(self, **kw):
            calls.append(("upload_file", kw["path_in_repo"], kw["path_or_fileobj"].decode()))

        def upload_folder(self, **kw):
            folder = Path(kw["folder_path"])
            staged = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
            calls.append(("upload_folder", staged, kw["repo_type"], kw["delete_patterns"]))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_for_test")
    mod = load_script()
    assert mod.main(["--repo-id", "someone/interir", "--root", str(repo), "--prune"]) == 0
    (c0, rid, kw), (c1, name, attrs), (c2, staged, rtype, delete) = calls
    assert c0 == "create_repo" and rid == "someone/interir"
    assert kw["repo_type"] == "space" and kw["space_sdk"] == "gradio" and kw["exist_ok"] is True
    assert c1 == "upload_file" and name == ".gitattributes" and "*.safetensors filter=lfs" in attrs
    assert c2 == "upload_folder" and staged == sorted(EXPECTED + [".gitattributes"]) and rtype == "space"
    assert delete == ["*"]
    assert "published: https://example.invalid/spaces/someone/interir" in capsys.readouterr().out
    assert "hf_fake_for_test" not in "".join(str(c) for c in calls)


def test_requirements_install_on_their_own():
    """A Space installs requirements.txt before the repository is there: no -e, -r or local paths."""
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert reqs and not [r for r in reqs if r.startswith(("-e", "-r", "-c", ".", "/", "file:"))]
    assert any(r.startswith("gradio") for r in reqs) and any(r.startswith("torch") for r in reqs)
    dev = [ln.strip() for ln in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    assert "-r requirements.txt" in dev and "-e ." in dev    # the test route still gets the `interir` command


def test_script_runs_as_a_command(repo):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "publish_space.py"), "--dry-run", "--root", str(repo)],
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "nothing uploaded" in out.stdout
