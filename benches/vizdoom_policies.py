#!/usr/bin/env python3
"""How long seven blind policies live in ViZDoom's take_cover: the figures that calibrate
dreamplay's Take Cover (`sim::ATTACK_CHANCE_PER_CHASE`, checked by `tests/take_cover.rs`).

Usage: py=$(../shared/peers/setup.sh); $py benches/vizdoom_policies.py [episodes] [skill]
The skill defaults to take_cover.cfg's own (4); pass 5 for Nightmare.
"""
import os
import random
import sys

import vizdoom as vzd

LEFT, RIGHT, NONE = [1, 0], [0, 1], [0, 0]


def policies():
    rng = random.Random(0)
    yield "still", lambda t: NONE
    yield "always left", lambda t: LEFT
    yield "uniform random", lambda t: rng.choice([LEFT, RIGHT, NONE])
    for half in (20, 40, 60, 80):
        yield f"sweep {half}", lambda t, h=half: LEFT if (t // h) % 2 == 0 else RIGHT


def main():
    episodes = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    game = vzd.DoomGame()
    game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
    if len(sys.argv) > 2:
        game.set_doom_skill(int(sys.argv[2]))
    game.set_window_visible(False)
    game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
    game.set_episode_timeout(2100)
    game.init()
    print(f"vizdoom {vzd.__version__} take_cover, {episodes} episodes per policy")
    print("| policy | tics alive |")
    print("|---|---|")
    for name, policy in policies():
        lengths = []
        for episode in range(episodes):
            game.set_seed(episode + 1)
            game.new_episode()
            tic = 0
            while not game.is_episode_finished():
                game.make_action(policy(tic))
                tic += 1
            lengths.append(game.get_total_reward())
        mean = sum(lengths) / episodes
        sd = (sum((x - mean) ** 2 for x in lengths) / episodes) ** 0.5
        print(f"| {name} | {mean:.1f} +- {sd:.1f} |", flush=True)


if __name__ == "__main__":
    main()
