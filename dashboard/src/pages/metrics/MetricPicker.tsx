import Autocomplete from "@mui/material/Autocomplete";
import TextField from "@mui/material/TextField";

interface Props {
  /** every metric the chosen devices have, with its unit */
  available: { metric: string; unit: string | null }[];
  value: string[];
  onChange: (metrics: string[]) => void;
  max: number;
  loading: boolean;
}

export function MetricPicker({ available, value, onChange, max, loading }: Props) {
  const units = new Map(available.map((m) => [m.metric, m.unit]));
  return (
    <Autocomplete<string, true>
      multiple
      sx={{ flex: "1 1 240px", minWidth: 200 }}
      options={value.length >= max ? [] : available.map((m) => m.metric)}
      value={value}
      onChange={(_e, v) => onChange(v.slice(0, max))}
      getOptionLabel={(m) => (units.get(m) ? `${m} (${units.get(m)})` : m)}
      filterSelectedOptions
      loading={loading}
      noOptionsText={value.length >= max ? `At most ${max} metrics` : "Choose devices first"}
      renderInput={(params) => (
        <TextField {...params} label="Metrics" size="small" helperText="None chosen: all of them" />
      )}
    />
  );
}
