#!/usr/bin/env python3
"""Keeps mlvae's documentation honest (Python 3 standard library only).

Scans README.md and docs/*.md.

  check_docs.py citations [--root DIR]
      Every relative Markdown link must point to an existing file. A link whose text is a code
      span, [`name`](path), is a citation and is checked against the file it points to:
        - path tests/**/*.cpp: `name` must be a TEST_CASE("name") or SUBCASE("name") there;
        - any other source file: `name` must occur there as an identifier (for A::b, both A and
          b must; a trailing "()" is ignored), unless `name` is the file's own name or path.
      Every ```cpp block must either be a complete program (it contains `int main`) or be marked
      as a fragment by the HTML comment <!-- snippet: fragment --> on a line before it (blank
      lines may separate them). Every file of the repository named anywhere in the text — prose,
      code spans and code blocks, e.g. `io/checkpoint.hpp`, scripts/run_main.sh or MODELS.md — must
      exist: a name with a directory must be a repository path (from the root, from the document's
      directory, or the tail of one, as mlvae/nn/dense.hpp is of include/mlvae/nn/dense.hpp); a bare
      name must be some repository file's name. Names of files that programs write (out/...,
      results.csv) are not references: only source, build and documentation extensions are checked
      (FILE_REF_EXT), and a line may opt out with <!-- files: not in the repository -->. Exit status
      1 on any failure, with file:line for each.

  check_docs.py extract --out DIR [--root DIR]
      Writes each complete-program ```cpp block to DIR/<doc>_<n>.cpp (starting with a #line
      directive so compiler errors point into the Markdown file), leaves unchanged files
      untouched, deletes stale ones, and prints one line per snippet: "<name>;<build|run>"
      (run when the block is preceded by <!-- snippet: run -->). Used by tests/docs/CMakeLists.txt.
"""
import argparse
import os
import re
import sys

FENCE_OPEN = re.compile(r"^(\s*)(```+|~~~+)\s*([A-Za-z0-9_+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(fragment|run)\s*-->\s*$")
# [text](target) — not images; target without spaces.
LINK = re.compile(r"(?<!!)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"^`([^`]+)`$")
TEST_NAME = re.compile(r'\b(?:TEST_CASE|SUBCASE)\s*\(\s*"((?:[^"\\]|\\.)*)"')
SOURCE_EXT = (".hpp", ".h", ".cpp", ".cc", ".cu", ".cuh", ".cmake", ".py", ".sh", ".txt", ".in")
# A mention of a repository file: a path-like token ending in a source, build or documentation
# extension (outputs such as results.csv or checkpoint.bin are not checked).
FILE_REF_EXT = ("md", "hpp", "h", "cpp", "cc", "cu", "cuh", "cmake", "py", "sh", "in")
FILE_REF = re.compile(r"(?<![\w/.<-])((?:\.\./|\./)?[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:/[A-Za-z0-9_.+-]+)*\.(?:%s))(?![\w/])"
                      % "|".join(FILE_REF_EXT))
FILE_REF_OPT_OUT = "<!-- files: not in the repository -->"
# Files outside the repository that the documents may name (system and third-party headers).
EXTERNAL_FILES = re.compile(r"^(Eigen/|unsupported/|doctest/|cereal/|CLI/|cuda|cublas|cudnn|nccl|mpi\.h|omp\.h|"
                            r"png\.h|zlib\.h|cblas\.h|dnnl|blis|torch/|curand)")


def doc_files(root):
    files = []
    readme = os.path.join(root, "README.md")
    if os.path.isfile(readme):
        files.append(readme)
    docs = os.path.join(root, "docs")
    if os.path.isdir(docs):
        files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    return files


def parse_blocks(lines):
    """Yields (kind, start_line, end_line, info, marker) for fenced blocks; lines are 1-based."""
    i = 0
    pending_marker = None
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            pending_marker = m.group(1)
            i += 1
            continue
        f = FENCE_OPEN.match(line)
        if f:
            fence = f.group(2)
            lang = f.group(3).lower()
            start = i
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                i += 1
            yield lang, start + 1, i + 1, lines[start + 1:i], pending_marker
            pending_marker = None
            i += 1
            continue
        if line.strip():
            pending_marker = None
        i += 1


def prose_lines(lines):
    """The lines outside fenced code blocks, with their 1-based numbers."""
    inside, fence = False, None
    for n, line in enumerate(lines, 1):
        f = FENCE_OPEN.match(line)
        if not inside and f:
            inside, fence = True, f.group(2)
            continue
        if inside:
            if line.strip().startswith(fence):
                inside = False
            continue
        yield n, line


def identifiers(path, cache={}):
    if path not in cache:
        with open(path, encoding="utf-8") as f:
            cache[path] = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", f.read()))
    return cache[path]


def test_names(path, cache={}):
    if path not in cache:
        with open(path, encoding="utf-8") as f:
            cache[path] = set(TEST_NAME.findall(f.read()))
    return cache[path]


def check_citation(name, target, rel_target):
    """Returns an error string or None."""
    parts = rel_target.replace("\\", "/").split("/")
    if rel_target.replace("\\", "/").endswith(name):
        return None  # [`file.hpp`](path/to/file.hpp): a file reference, the file exists
    if "tests" in parts and target.endswith(".cpp"):
        if name not in test_names(target):
            return f'no TEST_CASE/SUBCASE "{name}" in {rel_target}'
        return None
    if not target.endswith(SOURCE_EXT):
        return None
    bare = name[:-2] if name.endswith("()") else name
    pieces = [p for p in re.split(r"::", bare) if p]
    if not pieces or not all(re.fullmatch(r"~?[A-Za-z_][A-Za-z0-9_]*(<[^>]*>)?", p) for p in pieces):
        return f"citation `{name}` is not an identifier (use `name`, `Class::member` or `name()`)"
    ids = identifiers(target)
    for p in pieces:
        ident = re.sub(r"<.*>$", "", p).lstrip("~")
        if ident not in ids:
            return f"identifier `{ident}` not found in {rel_target}"
    return None


def repository_files(root):
    """The repository's files as root-relative paths: git ls-files, or a walk outside a git checkout."""
    import subprocess
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout
        files = [f for f in out.split("\n") if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for d, subdirs, names in os.walk(root):
        subdirs[:] = [s for s in subdirs if not s.startswith(".") and s not in ("build", "out")]
        files += [os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/") for n in names]
    return files


def check_file_mentions(root, rel_doc, lines, files):
    """Errors for every repository file named in `lines` that does not exist."""
    paths = set(files)
    names = {f.rsplit("/", 1)[-1] for f in files}
    doc_dir = os.path.dirname(rel_doc)
    errors, count = [], 0
    for n, line in enumerate(lines, 1):
        if FILE_REF_OPT_OUT in line:
            continue
        for m in FILE_REF.finditer(line):
            ref = m.group(1)
            if EXTERNAL_FILES.match(ref) or ref.startswith("http"):
                continue
            count += 1
            if "/" not in ref:
                if ref not in names:
                    errors.append(f"{rel_doc}:{n}: names the file {ref}, which is not in the repository")
                continue
            from_doc = os.path.normpath(os.path.join(doc_dir, ref)).replace(os.sep, "/")
            bare = ref[2:] if ref.startswith("./") else ref
            if (bare in paths or from_doc in paths or any(p.endswith("/" + bare) for p in paths)
                    or os.path.isdir(os.path.join(root, bare))):
                continue
            errors.append(f"{rel_doc}:{n}: names the file {ref}, which is not in the repository")
    return errors, count


def cmd_citations(root):
    errors, links, citations, compiled, fragments = [], 0, 0, 0, 0
    files = repository_files(root)
    mentions = 0
    for doc in doc_files(root):
        rel_doc = os.path.relpath(doc, root)
        with open(doc, encoding="utf-8") as f:
            lines = f.read().split("\n")
        mention_errors, count = check_file_mentions(root, rel_doc, lines, files)
        errors += mention_errors
        mentions += count
        for n, line in prose_lines(lines):
            for m in LINK.finditer(line):
                text, href = m.group(1), m.group(2)
                if re.match(r"^[a-z][a-z0-9+.-]*:", href) or href.startswith("#"):
                    continue  # external or in-page link
                path = href.split("#", 1)[0]
                target = os.path.normpath(os.path.join(os.path.dirname(doc), path))
                rel_target = os.path.relpath(target, root)
                links += 1
                if not os.path.exists(target):
                    errors.append(f"{rel_doc}:{n}: link target {href} does not exist")
                    continue
                cs = CODE_SPAN.match(text)
                if cs and os.path.isfile(target):
                    citations += 1
                    err = check_citation(cs.group(1), target, rel_target)
                    if err:
                        errors.append(f"{rel_doc}:{n}: {err}")
        for lang, start, _end, body, marker in parse_blocks(lines):
            if lang not in ("cpp", "c++", "cxx"):
                continue
            if any(re.search(r"\bint\s+main\s*\(", b) for b in body):
                compiled += 1
            elif marker == "fragment":
                fragments += 1
            else:
                errors.append(f"{rel_doc}:{start}: ```cpp block is neither a complete program (no `int main`) "
                              "nor marked <!-- snippet: fragment -->")
    for e in errors:
        print("error: " + e)
    print(f"check_docs: {len(doc_files(root))} documents, {links} relative links, {citations} citations, "
          f"{mentions} file mentions, {compiled} compiled snippets, {fragments} marked fragments, {len(errors)} errors")
    return 1 if errors else 0


def cmd_extract(root, out):
    os.makedirs(out, exist_ok=True)
    wanted = set()
    for doc in doc_files(root):
        stem = re.sub(r"[^A-Za-z0-9_]", "_", os.path.splitext(os.path.basename(doc))[0])
        with open(doc, encoding="utf-8") as f:
            lines = f.read().split("\n")
        count = 0
        for lang, start, _end, body, marker in parse_blocks(lines):
            if lang not in ("cpp", "c++", "cxx"):
                continue
            if not any(re.search(r"\bint\s+main\s*\(", b) for b in body):
                continue
            count += 1
            name = f"{stem}_{count}"
            path_literal = os.path.abspath(doc).replace("\\", "/").replace('"', '\\"')
            text = f'#line {start + 1} "{path_literal}"\n' + "\n".join(body) + "\n"
            file = os.path.join(out, name + ".cpp")
            wanted.add(name + ".cpp")
            old = None
            if os.path.exists(file):
                with open(file, encoding="utf-8") as f:
                    old = f.read()
            if old != text:
                with open(file, "w", encoding="utf-8") as f:
                    f.write(text)
            print(f"{name};{'run' if marker == 'run' else 'build'}")
    for f in os.listdir(out):
        if f.endswith(".cpp") and f not in wanted:
            os.remove(os.path.join(out, f))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["citations", "extract"])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    parser.add_argument("--out", help="output directory for extract")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    if args.command == "citations":
        return cmd_citations(root)
    if not args.out:
        parser.error("extract needs --out DIR")
    return cmd_extract(root, os.path.abspath(args.out))


if __name__ == "__main__":
    sys.exit(main())
