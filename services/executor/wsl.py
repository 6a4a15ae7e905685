"""WSL transport: commands run through ``wsl.exe [-d DISTRO] -e sh -c CMD`` and files
travel through its standard input and output, on a Windows host (or over SSH to one,
by running the executor there). On Linux it is exercised by a contract test with a
stand-in ``wsl.exe`` that runs sh."""

from __future__ import annotations

import asyncio
import shlex
import shutil

from .transport import HostRefused, HostUnreachable, Result, Transport


class WSLTransport(Transport):
    def __init__(self, exe: str = "wsl.exe", distribution: str | None = None):
        self.exe = exe
        self.distribution = distribution
        self.name = f"wsl:{distribution or 'default'}"

    def _argv(self, command: str) -> list[str]:
        found = shutil.which(self.exe)
        if found is None:
            raise HostRefused(f"{self.exe} not found: kind wsl needs Windows with WSL "
                              "(or set wsl_exe: to its path)")
        argv = [found]
        if self.distribution:
            argv += ["-d", self.distribution]
        return argv + ["-e", "sh", "-c", command]

    async def run(self, command: str, stdin: bytes | None = None, timeout: float = 60
                  ) -> Result:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(command), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise HostUnreachable(f"cannot start {self.exe}: {exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            raise HostUnreachable(f"{self.name} did not answer within {timeout:.0f}s") from None
        return Result(proc.returncode or 0, out, err)

    async def put(self, files: dict[str, bytes], mode: dict[str, int] | None = None) -> None:
        for path, data in files.items():
            chmod = f" && chmod {mode[path]:o} {shlex.quote(path)}" if mode and path in mode \
                else ""
            res = await self.run(f"cat > {shlex.quote(path)}{chmod}", stdin=data)
            if res.status != 0:
                raise HostRefused(f"cannot write {path} in {self.name}: "
                                  f"{res.stderr.decode(errors='replace').strip()}")

    async def get(self, path: str) -> bytes:
        res = await self.run(f"cat {shlex.quote(path)}")
        if res.status != 0:
            raise FileNotFoundError(f"{self.name}:{path}")
        return res.stdout
