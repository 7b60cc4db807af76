"""The real English corpus of the bundled example, obtained at set-up time.

No corpus text is stored in this repository. The example trains on the
*Lee background corpus*: 300 Australian Broadcasting Corporation news
articles (about 60,000 words), which the gensim project ships as a test file
(``gensim/test/test_data/lee_background.cor``) inside its wheel on PyPI
(gensim is LGPL-2.1; the articles' own licence is not stated, so the text is
extracted locally and never committed).

:func:`lee_corpus` downloads the gensim wheel once with
``pip download --no-deps`` (nothing is installed), reads that member from
the wheel as a zip archive, splits the articles into sentences and writes
one tokenized sentence per line to ``data/lee_background.txt``. Later calls
reuse the file. ``data/`` is ignored by git.

The tokenization written to the file: lowercase, punctuation split from
words (``"Sydney, today."`` -> ``"sydney , today ."``), one sentence per
line; the trainer then only splits on spaces.
"""
import glob
import hashlib
import os
import re
import subprocess
import sys
import zipfile

from lstm_accum.exceptions import InputError

__all__ = ["lee_corpus", "split_sentences", "tokenize_sentence",
           "GENSIM_VERSION", "MEMBER", "SOURCE"]

GENSIM_VERSION = "4.3.3"
MEMBER = "gensim/test/test_data/lee_background.cor"
SOURCE = ("Lee background corpus (300 ABC news articles) from the gensim "
          "%s wheel on PyPI, %s" % (GENSIM_VERSION, MEMBER))
_FILE = "lee_background.txt"

# A sentence ends at . ! or ? (possibly followed by a closing quote or
# bracket) followed by white space and an upper-case letter, digit or
# opening quote. Abbreviations such as "Mr. Smith" are rare in this text;
# they give a short sentence, which is harmless for a language model.
_BOUNDARY = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+"
                       r"(?=[\"'(\[]?[A-Z0-9])")
_TOKEN = re.compile(r"\d+(?:[.,:]\d+)*|\w+(?:[-']\w+)*|[^\w\s]")


def split_sentences(text):
    """Split running text into sentences.

    Parameters
    ----------
    text : str

    Returns
    -------
    list of str
        Stripped, non-empty sentences, in order.

    Examples
    --------
    >>> split_sentences("It rained. Then it stopped! Did it? Yes.")
    ['It rained.', 'Then it stopped!', 'Did it?', 'Yes.']
    """
    return [s.strip() for s in _BOUNDARY.split(text) if s.strip()]


def tokenize_sentence(sentence):
    """Lowercase a sentence and split punctuation from words.

    Parameters
    ----------
    sentence : str

    Returns
    -------
    list of str

    Examples
    --------
    >>> tokenize_sentence("Mr Howard's plan, at 4:00pm, costs $1,500.")
    ['mr', "howard's", 'plan', ',', 'at', '4:00', 'pm', ',', 'costs', '$', '1,500', '.']
    """
    return _TOKEN.findall(sentence.lower())


def _download_wheel(wheel_dir):
    os.makedirs(wheel_dir, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check",
               "gensim==%s" % GENSIM_VERSION, "-d", wheel_dir]
    proc = subprocess.run(command, capture_output=True, text=True)
    wheels = glob.glob(os.path.join(wheel_dir, "gensim-%s-*.whl"
                                    % GENSIM_VERSION))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise InputError(
            "could not download the example corpus: '%s' failed (%s). The "
            "example needs the package registry (PyPI) once to fetch the "
            "gensim %s wheel, which contains the text; check the network or "
            "pip's index settings, or put the wheel into %s by hand"
            % (" ".join(command[2:]), last[-1] if last else "no output",
               GENSIM_VERSION, wheel_dir))
    return sorted(wheels)[0]


def lee_corpus(data_dir="data", log=None):
    """Path of the example corpus file, creating it on first use.

    Parameters
    ----------
    data_dir : str
        Cache directory (default ``data`` in the working directory); the
        wheel is kept in ``data_dir/wheels`` and the sentences in
        ``data_dir/lee_background.txt``.
    log : callable, optional
        Receives one line about what is being done.

    Returns
    -------
    str
        The path of the sentence file (UTF-8, one tokenized sentence a
        line; about 2,700 sentences and 70,000 tokens).

    Raises
    ------
    InputError
        When the wheel cannot be downloaded or does not contain the text.
    """
    path = os.path.join(data_dir, _FILE)
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return path
    wheel_dir = os.path.join(data_dir, "wheels")
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "gensim-%s-*.whl"
                                           % GENSIM_VERSION)))
    if not wheels:
        if log:
            log("downloading the gensim %s wheel (about 27 MB, once) for "
                "its Lee corpus; nothing is installed" % GENSIM_VERSION)
        wheels = [_download_wheel(wheel_dir)]
    try:
        with zipfile.ZipFile(wheels[0]) as wheel:
            raw = wheel.read(MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise InputError("%s does not hold %s (%s); delete it and run again"
                         % (wheels[0], MEMBER, err)) from None
    text = raw.decode("utf-8", errors="replace")
    lines = []
    for article in text.splitlines():
        for sentence in split_sentences(article):
            tokens = tokenize_sentence(sentence)
            if tokens:
                lines.append(" ".join(tokens))
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    if log:
        log("wrote %d sentences (%s) to %s; sha256 of the source %s..."
            % (len(lines), SOURCE, path,
               hashlib.sha256(raw).hexdigest()[:12]))
    return path
