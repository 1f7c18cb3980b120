#!/usr/bin/env bash
# Regenerate the shipped speech sample and the engine's test fixtures from text.
#
#   samples/make_samples.sh              # samples/hello.wav and samples/hello.txt
#   samples/make_samples.sh --fixtures   # tests/data/*.wav and tests/data/fixtures.tsv
#   samples/make_samples.sh --all        # both
#
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox). Made with
# espeak-ng 1.51 and SoX 14.4.2; both are deterministic, and dither is off (-D),
# so the same versions give byte-identical files.
#
# Voice and rate: espeak-ng "en-us+klatt4" (US English, Klatt synthesiser), at
# 175 words per minute for the sample and 160 for the fixtures. Of the voices
# tried, this is the one pocketsphinx's US-English model recognises best (about
# 8 % WER against 23-50 % for en-us, en-us+m1, en-us+m3, en-us+f3 and en-gb, see
# bench/RESULTS.md). Each file is converted to 16 kHz mono 16-bit WAV, 3 dB
# below espeak's level (which clips after resampling), with silence padding.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "make_samples.sh: $tool is missing (apt-get install espeak-ng sox)" >&2; exit 1; }
done

# speak OUT.wav RATE LEAD_SECS TRAIL_SECS TEXT
speak() {
    espeak-ng -v en-us+klatt4 -s "$2" -w "$tmp/speech.wav" "$5"
    sox "$tmp/speech.wav" -D -b 16 -e signed-integer "$1" gain -3 rate 16000 channels 1 pad "$3" "$4"
}

# Lower-case words, the way the engine writes them.
plain() { tr 'A-Z' 'a-z' | tr -d '.,?!' ; }

make_sample() {
    local text="Good morning everyone. This is a short test of speech recognition on your computer. I would like a cup of coffee and a glass of water, please."
    speak "$here/hello.wav" 175 0.3 0.5 "$text"
    echo "$text" > "$here/hello.txt"
    echo "wrote samples/hello.wav ($(soxi -D "$here/hello.wav") s) and samples/hello.txt"
}

make_fixtures() {
    local data="$root/tests/data" i=0
    mkdir -p "$data"
    : > "$data/fixtures.tsv"
    while IFS= read -r text; do
        i=$((i + 1))
        local name
        name="$(printf 'utt%02d.wav' "$i")"
        speak "$data/$name" 160 0.2 0.2 "$text"
        printf '%s\t%s\n' "$name" "$(echo "$text" | plain)" >> "$data/fixtures.tsv"
    done <<'SENTENCES'
The weather today is cloudy with a chance of rain in the afternoon.
The children played in the park until it got dark.
Could you tell me how to get to the train station?
My brother lives in a small town near the river.
We are going to the beach on Sunday if the weather is good.
She reads a book every night before she goes to sleep.
SENTENCES
    echo "wrote $i fixtures and tests/data/fixtures.tsv"
}

case "${1:-}" in
    "") make_sample ;;
    --fixtures) make_fixtures ;;
    --all) make_sample; make_fixtures ;;
    *) echo "usage: $0 [--fixtures | --all]" >&2; exit 2 ;;
esac
