#!/usr/bin/env bash
# The shipped default student's training, stage by stage, as it was run (README, "Students"):
#   bash scripts/training_data.sh data/train
#   bash scripts/train_student.sh data/train livedream/student/shipped/effnet-lite0-block9.pt
# Each stage resumes the one before from the work folder (OUT.work/: the teacher pairs and the
# checkpoint). After a Ctrl-C the same command goes on where it stopped: a stage already done
# has no step left to train and only writes OUT again. About 5 hours of training on 2 CPU cores
# (286 minutes, most of it the first two stages), after ~47 minutes of teacher dreams.
set -euo pipefail
data=${1:?usage: train_student.sh DATA OUT.pt [THREADS]}
out=${2:?usage: train_student.sh DATA OUT.pt [THREADS]}
threads=${3:-2}
distill() { livedream distill "$data" -o "$out" --threads "$threads" "$@"; }

# 1-2. Texture-led (the dream's look): texture statistics weigh 3, the objective 1. The second
# stage lays the cosine over the new length: a warm restart at step 12000.
distill --steps 12000
distill --steps 30000
# 3. The objective leads (its strength), at a new, lower learning rate from step 30000.
distill --steps 32500 --lr 3e-4 --schedule-from 30000 --objective-weight 3 --texture-weight 1
# 4-7. Stronger and steadier, in turns: stability raised (less flicker in video), then the
# objective raised again, twice each.
distill --steps 36000 --lr 3e-4 --schedule-from 32500 --objective-weight 3 --texture-weight 1 --stability-weight 1
distill --steps 40000 --lr 3e-4 --schedule-from 36000 --objective-weight 6 --texture-weight 1 --stability-weight 1
distill --steps 43500 --lr 3e-4 --schedule-from 40000 --objective-weight 6 --texture-weight 1 --stability-weight 3
distill --steps 47500 --lr 3e-4 --schedule-from 43500 --objective-weight 10 --texture-weight 1 --stability-weight 3
# 8-9. Steadier again (stability 6), then stronger (objective 15): stronger than stage 7 at the
# same flicker in video. (Run on one thread, THREADS=1, beside other work: 27 minutes each.)
distill --steps 52000 --lr 3e-4 --schedule-from 47500 --objective-weight 10 --texture-weight 1 --stability-weight 6
distill --steps 56000 --lr 3e-4 --schedule-from 52000 --objective-weight 15 --texture-weight 1 --stability-weight 6
