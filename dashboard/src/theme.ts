import { createTheme } from "@mui/material/styles";

export const theme = createTheme({
  palette: {
    mode: "light",
    primary: { main: "#1565c0" },
    secondary: { main: "#00897b" },
    background: { default: "#f5f7fa" },
  },
  shape: { borderRadius: 8 },
  components: {
    MuiButtonBase: { defaultProps: { disableRipple: false } },
    // Keyboard focus must be visible on every control, not only where MUI draws it by default.
    MuiButton: { styleOverrides: { root: { textTransform: "none" } } },
    MuiCssBaseline: {
      styleOverrides: {
        ":focus-visible": { outline: "2px solid #1565c0", outlineOffset: 2 },
        ".skip-link": {
          position: "absolute", left: -9999, top: 0, zIndex: 2000, padding: 8, background: "#fff",
        },
        ".skip-link:focus": { left: 8 },
        // Text for screen readers only (e.g. "Service" before a service's name heading).
        ".visually-hidden": {
          position: "absolute", width: 1, height: 1, padding: 0, margin: -1, overflow: "hidden",
          clip: "rect(0 0 0 0)", whiteSpace: "nowrap", border: 0,
        },
      },
    },
  },
});
