"""
Title: Training the BCB emulator with a plain `model.fit`
Description: Build the emulator layer by layer, fit it on a built ModelE dataset and score its
predictions of biomass-burning black carbon in physical units.

Run: `python examples/train_with_model_fit.py --data-dir DIR --config coarse_l20 --out DIR`
(build the dataset first: `bcb-emulator build-dataset`). Everything written goes to `--out`
(default: a new temporary folder).
"""

import argparse
import json
import tempfile
from pathlib import Path

import keras
import numpy as np

from bcb_emulator.data import BuiltDataset
from bcb_emulator.layers import ConvLSTMStack, Readout, SFTFusion, SpatialEncoder
from bcb_emulator.losses import MseMae
from bcb_emulator.metrics import R2Score

# Tunable values, all here: the splits, windows of T steps, a small network, the optimizer.
TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT = "train", "validation", "test"
WINDOW, STRIDE, BATCH_SIZE = 4, 4, 8  # T input steps; starts STRIDE steps apart
FILTERS, ENCODER_KERNEL, GROUPS, SFT_HIDDEN = 16, 5, 4, 16
LSTM_FILTERS, LSTM_LAYERS = 16, 2
EPOCHS, LEARNING_RATE, SEED = 10, 1e-3, 1337
PRINT_LEVELS = 5  # levels whose scores are printed (all are returned)


def main(argv=None) -> dict:
    # Command line: which built dataset, how long to train, where outputs go; then seed all.
    parser = argparse.ArgumentParser(description="Train the BCB emulator with model.fit.")
    parser.add_argument("--data-dir", required=True, help="TFDS data_dir of the built dataset")
    parser.add_argument("--config", default="coarse_l20", help="builder config it was built as")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--stride", type=int, default=STRIDE)
    parser.add_argument("--out", default=None, help="output folder (default: a temp dir)")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bcb_example_"))
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(SEED)

    # Open the built dataset once: its layout, normalization statistics and split sizes.
    dataset = BuiltDataset.open(args.data_dir, args.config)
    (h, w), levels = dataset.spec.grid.shape, dataset.spec.n_levels
    print(f"{dataset.name}: grid {h}x{w}, L={levels}, splits {dataset.split_sizes}")

    # Cut normalized windows of T steps (target: BCB at the last step); their number of
    # batches is known from the stored time stamps, so Keras knows how long an epoch is.
    def windows(split, shuffle):
        size = dict(window=args.window, stride=args.stride, batch_size=BATCH_SIZE)
        ds = dataset.windows(split, **size, shuffle=shuffle, seed=SEED)
        print(f"{split}: {int(ds.cardinality())} batches of up to {BATCH_SIZE} windows")
        return ds

    train_ds, val_ds = windows(TRAIN_SPLIT, shuffle=True), windows(VAL_SPLIT, shuffle=False)
    inputs, y = next(iter(train_ds))
    print("x2d", inputs["x2d"].shape, "x3d", inputs["x3d"].shape, "y", y.shape)
    # x2d (B, T, H, W, 6), x3d (B, T, H, W, 8·L), y (B, H, W, L)

    # Encode the surface (2D) and profile (3D) streams separately, frame by frame.
    x2d = keras.Input((args.window, h, w, 6), name="x2d")
    x3d = keras.Input((args.window, h, w, 8 * levels), name="x3d")
    encoder = dict(filters=FILTERS, kernel_size=ENCODER_KERNEL, groups=GROUPS)
    f1 = SpatialEncoder(**encoder, name="encoder_2d")(x2d)  # (B, T, H, W, FILTERS)
    f2 = SpatialEncoder(**encoder, name="encoder_3d")(x3d)  # (B, T, H, W, FILTERS)
    # Let the profile features modulate the surface features (spatial feature transform).
    fused = SFTFusion(SFT_HIDDEN, name="fusion")(f1, f2)  # (B, T, H, W, FILTERS)
    # Run the frames through the spherical ConvLSTM; keep the last hidden state.
    hidden = ConvLSTMStack(LSTM_FILTERS, num_layers=LSTM_LAYERS, name="conv_lstm")(fused)
    # hidden: (B, H, W, LSTM_FILTERS); read out L levels of normalized BCB, in float32.
    bcb = Readout(levels, dtype="float32", name="bcb")(hidden)  # (B, H, W, L)
    model = keras.Model({"x2d": x2d, "x3d": x3d}, bcb, name="bcb_emulator")
    model.summary()

    # Fit with (MSE + MAE) / 2 on normalized values, R² pooled over the validation set; save.
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=MseMae(),
        metrics=[R2Score(levels, name="r2")],
    )
    history = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, verbose=2)
    model.save(out / "model.keras")

    # Score the test split in physical units (10⁻¹¹ kg/kg), pooled over windows and cells.
    test_ds = windows(TEST_SPLIT, shuffle=False)
    area = dataset.spec.grid.area / dataset.spec.grid.area.sum()  # (H, W), sums to 1
    n, s_y, s_yy, sse = 0, np.zeros(levels), np.zeros(levels), np.zeros(levels)  # per level
    mean_truth_l1, mean_pred_l1 = [], []  # area-weighted global mean of each test window
    for inputs, y in test_ds:
        truth = dataset.stats.denormalize_target(y.numpy())  # (B, H, W, L)
        pred = dataset.stats.denormalize_target(model.predict_on_batch(inputs))  # (B, H, W, L)
        t, p = truth.astype(np.float64), pred.astype(np.float64)
        n += t[..., 0].size  # B·H·W points per level
        s_y += t.sum(axis=(0, 1, 2))  # (L,)
        s_yy += (t * t).sum(axis=(0, 1, 2))  # (L,)
        sse += ((t - p) ** 2).sum(axis=(0, 1, 2))  # (L,)
        mean_truth_l1 += (t[..., 0] * area).sum(axis=(1, 2)).tolist()  # B values
        mean_pred_l1 += (p[..., 0] * area).sum(axis=(1, 2)).tolist()
    r2 = 1.0 - sse / np.maximum(s_yy - s_y * s_y / n, 1e-300)  # (L,)
    rmse = np.sqrt(sse / n)  # (L,) 10⁻¹¹ kg/kg
    for k in range(min(PRINT_LEVELS, levels)):
        print(f"level {k + 1:2d}: R² {r2[k]:7.4f}  RMSE {rmse[k]:9.4f} x 1e-11 kg/kg")
    print(
        f"global mean BCB at level 1 over {TEST_SPLIT}: truth {np.mean(mean_truth_l1):.4f}, "
        f"predicted {np.mean(mean_pred_l1):.4f} x 1e-11 kg/kg"
    )

    # Keep the scores beside the model in the output folder.
    result = {
        "r2_level": r2.tolist(),
        "rmse_level": rmse.tolist(),
        "mean_truth_l1": mean_truth_l1,
        "mean_pred_l1": mean_pred_l1,
        "history": history.history,
        "out": str(out),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    print(f"model and metrics in {out}")
    return result


if __name__ == "__main__":
    main()
