"""``larsr upscale --help`` that a newcomer can read: options grouped by what they are for, the
embedded model's real defaults, and examples (as realesrgan-ncnn-vulkan and rembg print them).
"""

from __future__ import annotations

import click

SECTIONS: dict[str, tuple[str, ...]] = {
    "Output": ("output", "scale", "fmt", "quality", "suffix", "strip_metadata"),
    "Texture": ("temperature", "texture", "seed", "samples", "model"),
    "Batch": ("recursive", "overwrite", "skip_existing", "quiet", "as_json"),
    "Speed and memory": ("tile", "device", "threads", "precision"),
    "Cluster": ("ray_address", "workers"),
}

EXAMPLES = """\
  larsr upscale photo.jpg -o photo_x4.png             one file
  larsr upscale holiday/ -o big/ -r --skip-existing   a folder tree, resumable
  larsr upscale face.png -o out/ --samples 4          four seeds to choose from
  larsr upscale scan.tif -o scan_x4.tif -t 0          deterministic texture
  larsr upscale photo.png -o clean.png --texture 0    the coarse net alone
  cat in.png | larsr upscale - -o - > out.png         a pipe"""


def model_defaults(name: str = "larsr-x4") -> str:
    """The embedded model's default temperature and texture, for the help text; empty when the
    model cannot be read (help must never fail)."""
    try:
        from .manifest import read_manifest
        from .registry import embedded_models

        folder = embedded_models().get(name)
        if folder is None:
            return ""
        m = read_manifest(folder)
    except Exception:  # noqa: BLE001 - help text must print whatever the model folder holds
        return ""
    return f" ({name}: -t {m.default_temperature:g}, --texture {m.default_texture:g})"


# Stands in the --temperature help for the embedded model's defaults; filled in only when help is
# printed, so no start-up of `larsr` reads a manifest for it.
DEFAULTS_MARK = "\x00defaults\x00"


class SectionedCommand(click.Command):
    """Prints options in SECTIONS order under their headings, then the examples."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        defaults = model_defaults()
        records = {}
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            records[p.name] = record and (record[0], record[1].replace(DEFAULTS_MARK, defaults))
        placed: set[str | None] = set()
        for title, names in SECTIONS.items():
            rows = [records[n] for n in names if records.get(n)]
            placed.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)  # type: ignore[arg-type]
        # Arguments are in the usage line; only options without a section land in "Other".
        options = {p.name for p in self.get_params(ctx) if isinstance(p, click.Option)}
        rest = [r for n, r in records.items() if n in options and n not in placed and r]
        if rest:
            with formatter.section("Other"):
                formatter.write_dl(rest)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Examples"):
            formatter.write(EXAMPLES + "\n")
