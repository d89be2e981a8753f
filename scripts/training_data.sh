#!/usr/bin/env bash
# The photos the shipped students were trained on, gathered from package registries into one folder:
#   bash scripts/training_data.sh data/train
# Debian wallpaper packages (only their photographs are kept, listed below), scikit-image's and
# matplotlib's sample photos (from their PyPI wheels), and the real clips and photos of
# ../shared/media except box.mp4, which the benchmarks keep for footage the student never saw.
# OpenCV's own sample images and clips are never used for training.
set -euo pipefail
out=${1:?usage: training_data.sh FOLDER}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

(cd "$work" && apt-get download -q mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-20.04 >/dev/null)
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
mate=$work/root/usr/share/backgrounds/mate/nature
for f in Garden Dune Wood Aqua TwoWings Storm GreenMeadow RainDrops Blinds LadyBird YellowFlower; do
  cp "$mate/$f.jpg" "$out/mate-$f.jpg"
done
plasma=$work/root/usr/share/wallpapers
for f in FallenLeaf Path summer_1am EveningGlow Grey ColorfulCups OneStandsOut ColdRipple BytheWater Kite; do
  cp "$plasma/$f/contents/images/2560x1600.jpg" "$out/plasma-$f.jpg"
done
cp "$work/root/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg" "$out/lomiri-Kleiber.jpg"
cp "$work/root/usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg" "$out/lomiri-Infinite-Sea.jpg"

python3 -m pip download -q --no-deps --only-binary=:all: -d "$work/wheels" scikit-image==0.26.0 matplotlib==3.11.2
(cd "$work" && unzip -q -o wheels/scikit_image-*.whl 'skimage/data/*' && unzip -q -o wheels/matplotlib-*.whl '*/sample_data/grace_hopper.jpg')
for f in astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_left.png hubble_deep_field.jpg retina.jpg ihc.png camera.png; do
  cp "$work/skimage/data/$f" "$out/skimage-$f"
done
cp "$work"/matplotlib/mpl-data/sample_data/grace_hopper.jpg "$out/matplotlib-grace_hopper.jpg"

media=$here/../shared/media
if [ -d "$media" ]; then
  cp "$media/fruits.jpg" "$media/starry_night.jpg" "$media/tree.avi" "$out/"
else
  echo "training_data.sh: $media not found: the shared clips are left out" >&2
fi
echo "$(ls "$out" | wc -l) files in $out"
