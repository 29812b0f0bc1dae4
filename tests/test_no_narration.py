"""The repository speaks of its software, not of how it was developed: no text in the README,
docs, code, comments, configs or tools names work sessions, rounds of development, dated or
throw-away runs, or notes that are not in the repository."""
import os
import re

import pytest
from conftest import ROOT

#: what is read: every text file under these (files and folders), minus SKIP
SCANNED = ('README.md', 'docs', 'micronet_mm', 'tools', 'configs', 'tests', 'demo', '.ci',
           'requirements', 'requirements.txt', 'setup.py', 'pyproject.toml', 'model-index.yml',
           'micronet_mm_startup.py', 'micronet_mm_post_import.py')
SKIP_DIRS = {'__pycache__', '.mim', 'data'}
TEXT = ('.md', '.py', '.h', '.hpp', '.cpp', '.txt', '.sh', '.toml', '.yml', '.yaml', '.cfg', '')
THIS_FILE = os.path.abspath(__file__)

#: (name, pattern) of the words that narrate development
FORBIDDEN = [
    ('throw-away run or script', r'throw-?away'),
    ('work session', r'\bsessions?\b'),
    ('round of development', r'\bround of\b|\b(first|second|third|fourth|fifth|sixth|seventh|'
                             r'eighth|ninth|tenth) (session|round)\b'),
    ('date of a run', r'\b20\d\d-\d\d-\d\d\b'),
    ('time of a run', r'\bUTC\b|\b\d\d:\d\d UTC'),
    ('notes outside the repository', r'shared/notes|notes file'),
    ('work log', r'speed_history|work log|lab notebook'),
    ('earlier versions', r'\ban earlier version\b|\ba later session\b'),
]
#: where "session" names software (pytest fixture scopes, ONNX Runtime sessions, subprocess)
SOFTWARE_SESSION = re.compile(
    r"scope='session'|InferenceSession|SessionOptions|\w+_session\b|start_new_session|"
    r'session (fixtures?|options)|Runtime( CPU)? session', re.I)


def scanned_files(root: str = ROOT):
    for name in SCANNED:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            yield path
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            for f in files:
                if os.path.splitext(f)[1] in TEXT:
                    yield os.path.join(folder, f)


def hits(text: str) -> list[tuple[int, str, str]]:
    """``(line number, what, line)`` of every narrating word in ``text``."""
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        cleaned = SOFTWARE_SESSION.sub('', line)
        for what, pattern in FORBIDDEN:
            if re.search(pattern, cleaned, re.I):
                out.append((no, what, line.strip()[:120]))
    return out


def test_no_text_narrates_development():
    found = []
    for path in scanned_files():
        if os.path.abspath(path) == THIS_FILE:
            continue
        try:
            text = open(path, encoding='utf-8').read()
        except UnicodeDecodeError:
            continue
        found += [f'{os.path.relpath(path, ROOT)}:{no}: {what}: {line}'
                  for no, what, line in hits(text)]
    assert found == [], '\n'.join(found)


def test_scan_covers_the_repository():
    """The scan reads the README, the docs, the package's C++ and Python, tools and tests."""
    files = {os.path.relpath(p, ROOT) for p in scanned_files()}
    for path in ('README.md', 'docs/deploy.md', 'micronet_mm/csrc/program.h',
                 'micronet_mm/deploy/rewrites/native_block.py', 'tools/setup_env.sh',
                 'requirements/torch.txt', 'tests/conftest.py'):
        assert path in files, path


@pytest.mark.parametrize('line, flagged', [
    ('measured in one interleaved throw-away run', True),
    ('the ninth session left the kernels as they are', True),
    ('Measured 2026-12-04, run started 17:05 UTC', True),
    ('# see shared/notes/openmmlab-install.md', True),
    ('details in docs/speed_history.md', True),
    ('the numbered round of development', True),
    ("@pytest.fixture(scope='session')", False),
    ('sess = ort.InferenceSession(path)', False),
    ('An ONNX Runtime CPU session with one thread', False),
    ('alternating rounds of the training configurations', False),
])
def test_patterns(line, flagged):
    assert bool(hits(line)) is flagged
