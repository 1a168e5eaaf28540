-- Old to-device txn ids are pruned by age (ToDeviceService.prune_txns): find them by created_ts.
CREATE INDEX to_device_txns_created ON to_device_txns (created_ts);
