import Autocomplete from "@mui/material/Autocomplete";
import Alert from "@mui/material/Alert";
import Box from "@mui/material/Box";
import Button from "@mui/material/Button";
import TextField from "@mui/material/TextField";
import { useState } from "react";

import type { Device } from "../../api/devices";
import { useDeviceSearch } from "../../api/telemetry";
import { useMapDevice, type TwinNode } from "../../api/twin";
import { ErrorAlert } from "../../components/ErrorAlert";
import { useDebounced } from "../metrics/useDebounced";

interface Props {
  /** Spaces and elements a device can be placed in */
  places: TwinNode[];
  /** the place picked (in the tree, the 3D view or here) */
  place: TwinNode | null;
  onPlaceChange: (nodeId: number | null) => void;
}

/** Map a device to a space by picking both; mapping a mapped device again moves it. */
export function MapDeviceForm({ places, place, onPlaceChange }: Props) {
  const [device, setDevice] = useState<Device | null>(null);
  const [text, setText] = useState("");
  const search = useDeviceSearch(useDebounced(text));
  const map = useMapDevice();
  const [done, setDone] = useState<string | null>(null);

  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    if (!device || !place) return;
    setDone(null);
    map.mutate({ device: device.uuid, node: place.id }, {
      onSuccess: (m) => {
        setDone(`${m.deviceName} is now in ${m.place.name}.`);
        setDevice(null);
      },
    });
  };

  return (
    <Box component="form" onSubmit={submit} aria-label="Map a device to a space"
      sx={{ display: "flex", flexWrap: "wrap", gap: 2, alignItems: "flex-start" }}>
      <Autocomplete<Device>
        sx={{ flex: "1 1 220px", minWidth: 200 }}
        options={search.data?.items ?? []}
        value={device}
        onChange={(_e, d) => setDevice(d)}
        inputValue={text}
        onInputChange={(_e, v) => setText(v)}
        filterOptions={(o) => o}
        getOptionLabel={(d) => d.name}
        isOptionEqualToValue={(a, b) => a.uuid === b.uuid}
        loading={search.isFetching}
        noOptionsText={search.isError ? "Could not search devices" : "No devices match"}
        renderInput={(params) => <TextField {...params} label="Device" size="small" />}
      />
      <Autocomplete<TwinNode>
        sx={{ flex: "1 1 220px", minWidth: 200 }}
        options={places}
        value={place}
        onChange={(_e, n) => onPlaceChange(n?.id ?? null)}
        getOptionLabel={(n) => `${n.name} (${n.kind})`}
        getOptionKey={(n) => n.id}
        isOptionEqualToValue={(a, b) => a.id === b.id}
        noOptionsText="No spaces: import an IFC file first"
        renderInput={(params) => <TextField {...params} label="Space or element" size="small" />}
      />
      <Button type="submit" variant="contained" disabled={!device || !place || map.isPending}>
        Map device
      </Button>
      {search.isError && <Box sx={{ flexBasis: "100%" }}><ErrorAlert error={search.error} /></Box>}
      {map.isError && <Box sx={{ flexBasis: "100%" }}><ErrorAlert error={map.error} /></Box>}
      {done && <Alert severity="success" role="status" sx={{ flexBasis: "100%" }}>{done}</Alert>}
    </Box>
  );
}
