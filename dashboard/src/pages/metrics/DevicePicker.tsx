import Autocomplete from "@mui/material/Autocomplete";
import TextField from "@mui/material/TextField";
import { useState } from "react";

import { useDeviceSearch } from "../../api/telemetry";
import { useDebounced } from "./useDebounced";

export interface DeviceRef {
  uuid: string;
  name: string;
}

interface Props {
  value: DeviceRef[];
  onChange: (devices: DeviceRef[]) => void;
  max: number;
}

/** Several devices, searched on the server by name or uuid (the registry may hold 10,000). */
export function DevicePicker({ value, onChange, max }: Props) {
  const [text, setText] = useState("");
  const search = useDebounced(text);
  const found = useDeviceSearch(search);
  const options: DeviceRef[] = (found.data?.items ?? []).map((d) => ({ uuid: d.uuid, name: d.name }));
  const full = value.length >= max;
  return (
    <Autocomplete<DeviceRef, true>
      multiple
      sx={{ flex: "2 1 320px", minWidth: 240 }}
      options={full ? [] : options}
      value={value}
      onChange={(_e, v) => onChange(v.slice(0, max))}
      inputValue={text}
      onInputChange={(_e, v, reason) => reason !== "reset" && setText(v)}
      filterOptions={(o) => o}
      getOptionLabel={(d) => d.name}
      getOptionKey={(d) => d.uuid}
      isOptionEqualToValue={(a, b) => a.uuid === b.uuid}
      filterSelectedOptions
      loading={found.isFetching}
      noOptionsText={full ? `At most ${max} devices` : found.isError ? found.error.message : "No devices match"}
      renderInput={(params) => (
        <TextField {...params} label="Devices" size="small"
          helperText={found.isError ? found.error.message : `Up to ${max}`} error={found.isError} />
      )}
    />
  );
}
