def car_action(a):
    steer = a[..., 0]
    gas = (a[..., 1] + 1) / 2  # [-1, 1] -> [0, 1]
    brake = np.clip(a[..., 2], 0, 1)  # negative outputs mean no brake
    return np.stack([steer, gas, brake], axis=-1)
