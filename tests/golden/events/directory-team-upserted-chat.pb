
$e9738690-662c-5d07-bb18-fd2943b1f3ed˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1b‰
†
cx-emeaCX EMEAkim@vendor.example*^
teamsUhttps://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke