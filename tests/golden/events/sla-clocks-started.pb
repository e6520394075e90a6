
$602dad8d-caf3-558b-a975-c13ffd5662c4$949789c8-ec81-59e5-9ada-15fffdc6c063ò…ú»ÄîÔ:"req-1*dana.li@vendor.example2
crm-case-9:req-1R«ò…ú»opened"dana.li@vendor.example*™
ACME-001relationship-npsrnps-detractor""NPS detractor follow-up: Acme Corp*ò…ú»2=Ä£ÄØÄºi"/
Äﬁ42Zemea-office"
APACapac-office(0:emea-officeBEMEA20Ä£"ò…ú»*ò≤¨»2
2òÏ°»2
Kòèß»2Äºi"ò…ú»*òù∞…B"ò…ú»
òæ¡»
ò≥Ê»