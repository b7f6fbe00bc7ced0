"""Pure order management: the OMS engine, the order lifecycle, pre-trade risk and the state it keeps."""
