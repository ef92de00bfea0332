"""Build hook of the kovan-kv package (the metadata is in pyproject.toml).

build_py also generates kovan_kv/kv_pb2.py with protoc, into the build folder only, from
the first kv.proto found among: $KOVAN_KV_PROTO, ../../proto/kv.proto (a checkout of the
repository) and ./kv.proto (an sdist, whose kv.proto the sdist hook below copies in).
protoc is $PROTOC or the first one on PATH (Debian: protobuf-compiler).
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent


def find_proto():
    candidates = []
    if os.environ.get("KOVAN_KV_PROTO"):
        candidates.append(Path(os.environ["KOVAN_KV_PROTO"]))
    candidates += [HERE.parent.parent / "proto" / "kv.proto", HERE / "kv.proto"]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise SystemExit("kovan-kv: kv.proto not found (looked at %s); set KOVAN_KV_PROTO"
                     % ", ".join(str(p) for p in candidates))


def find_protoc():
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    if not protoc:
        raise SystemExit("kovan-kv: protoc not found; install it (Debian: protobuf-compiler) "
                         "or set PROTOC")
    return protoc


class BuildPyWithProto(build_py):
    """Copies the package sources, then generates kv_pb2.py next to them."""

    def run(self):
        super().run()
        proto = find_proto()
        out = Path(self.build_lib) / "kovan_kv"
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([find_protoc(), "--python_out=" + str(out), "-I" + str(proto.parent),
                        str(proto)], check=True)
        if not (out / "kv_pb2.py").is_file():
            raise SystemExit("kovan-kv: protoc did not write kv_pb2.py")


class SdistWithProto(sdist):
    """Ships kv.proto in the source archive, so that it builds outside the repository."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        shutil.copyfile(find_proto(), os.path.join(base_dir, "kv.proto"))


setup(cmdclass={"build_py": BuildPyWithProto, "sdist": SdistWithProto})
