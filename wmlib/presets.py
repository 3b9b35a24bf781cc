"""The presets' numbers: the paper's per-game settings, and how much data and compute each scale preset puts in.

:func:`wmlib.config.make_config` applies them (the paper's CarRacing values are :class:`wmlib.config.Config`'s own
defaults); docs/settings.md puts them side by side.
"""

# The paper's per-game numbers (World Models, Sec. 3-4 and the appendix; docs/settings.md lists them by preset).
GAME_DEFAULTS = {
    "CarRacing-v3": dict(
        z_dim=32,
        hidden_dim=256,
        max_frames=1000,
        min_frames=0,
        predict_done=False,
        restart_flag=False,
        seq_len=999,
        temperature=1.0,
        max_steps=1000,
        in_dream=False,
        generations=1800,
        dream_max_len=1000,
        target_cumulative_reward=None,
    ),
    "DoomTakeCover": dict(
        z_dim=64,
        hidden_dim=512,
        max_frames=2100,
        min_frames=100,
        predict_done=True,
        restart_flag=True,
        seq_len=500,
        temperature=1.15,
        max_steps=2100,
        in_dream=True,
        generations=200,
        dream_max_len=2100,
        rnn_lr_decay=0.99999,
    ),
}

# Scale presets. The architecture (N_z, LSTM size, mixtures, controller) is always the paper's; presets change
# only how much data and compute go in.
PRESET_OVERRIDES = {
    "paper": {"CarRacing-v3": {}, "DoomTakeCover": {}},
    "small": {
        "CarRacing-v3": dict(
            num_rollouts=60,
            max_frames=500,
            vae_epochs=3,
            vae_batch=64,
            seq_len=100,
            rnn_batch=32,
            rnn_steps=600,
            pop=16,
            trials=2,
            generations=10,
            eval_every=5,
            eval_episodes=8,
            max_steps=500,
            test_rollouts=10,
        ),
        "DoomTakeCover": dict(
            num_rollouts=300,
            vae_epochs=1,
            vae_batch=64,
            seq_len=100,
            rnn_batch=32,
            rnn_steps=600,
            rnn_lr_decay=1.0,
            in_dream=False,
            pop=16,
            trials=4,
            generations=40,
            eval_every=5,
            eval_episodes=16,
            test_rollouts=100,
        ),
    },
    # Doom's dream-trained agent on 2 CPU cores in an afternoon (docs/results-doom.md).
    # The architecture, CMA-ES settings, temperature and dream are the paper's; less data and compute go into V and
    # M, and V learns faster (a higher learning rate) because it sees ~10x fewer batches than the paper's. M: 3500
    # steps of 64 x 100 (a step takes ~1 s on 2 cores). This dream is exploitable; four rounds of the paper's
    # iterative training (`wm iterate --more_rnn_steps 1000`, each round's new episodes a fifth of M's windows:
    # recent_share) repair it, with 10 generations of C per dream (30 in the third, whose controller the fourth
    # round's real play then corrects).
    #
    # CarRacing on 2 CPU cores in about 12 hours, trained in the real game as in the paper. Less data for V and M:
    # 2,000 random episodes, V for one epoch over the first 600 of them (600k frames, shuffled across all), M on
    # 200-step windows. C: the paper's CMA-ES (64 candidates x 16 episodes, sigma 0.1), with two savings that leave
    # the test alone: a training episode ends after 100 frames in a row without a new track tile (early_stop), and
    # the candidates of a generation share their tracks (paired_seeds, as the original code did). The CMA-ES mean
    # is scored on 256 whole episodes every 10 generations (the paper: 1,024 every 25).
    "reproduce": {
        "CarRacing-v3": dict(
            num_rollouts=2000,
            vae_episodes=600,
            vae_epochs=1,
            vae_batch=100,
            vae_lr=5e-4,
            seq_len=200,
            rnn_batch=64,
            rnn_steps=3000,
            pop=64,
            trials=16,
            generations=100,
            eval_every=10,
            eval_episodes=256,
            early_stop=100,
            paired_seeds=True,
            test_rollouts=100,
        ),
        "DoomTakeCover": dict(
            num_rollouts=2000,
            vae_episodes=1000,
            vae_epochs=1,
            vae_batch=100,
            vae_lr=5e-4,
            seq_len=100,
            rnn_batch=64,
            rnn_steps=3500,
            recent_share=0.2,
            in_dream=True,
            pop=64,
            trials=16,
            generations=10,
            eval_every=10,
            eval_episodes=1024,
            test_rollouts=100,
        ),
    },
    "smoke": {
        "CarRacing-v3": dict(
            num_rollouts=3,
            max_frames=40,
            vae_epochs=1,
            vae_batch=16,
            seq_len=16,
            rnn_batch=4,
            rnn_steps=4,
            pop=4,
            trials=2,
            generations=2,
            eval_every=1,
            eval_episodes=2,
            max_steps=30,
            test_rollouts=2,
            record=1,
            workers=1,
            dream_max_len=30,
        ),
        "DoomTakeCover": dict(
            num_rollouts=3,
            max_frames=60,
            min_frames=10,
            vae_epochs=1,
            vae_batch=16,
            seq_len=16,
            rnn_batch=4,
            rnn_steps=4,
            pop=4,
            trials=2,
            generations=2,
            eval_every=1,
            eval_episodes=4,
            max_steps=60,
            dream_max_len=40,
            test_rollouts=2,
            record=1,
            workers=1,
        ),
    },
}
