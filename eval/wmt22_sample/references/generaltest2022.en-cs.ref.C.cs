Pokud vás nenajdou, určitě vám zavolají.
Nicméně je lépe kontaktovat je, jakmile budou poblíž s vaší zásilkou.
Vakuová hadice Samco Sport je přírodní silikonová gumová hadice, která je dostupná s vnitřním průměrem (I.D) od 3 do 9 mm.
Je navržena speciálně pro podtlaková potrubí, odvzdušňovací hadice karburátorů, odvzdušňovací hadice palivových nádrží, přetok chladicí kapaliny a kontrolu emisí a lze ji použít pro hadice ostřikovačů a izolaci vodičů.
Je vhodná pouze pro systémy pod nízkým tlakem.
Vakuová hadice Samco není určena pro převod olejů, paliva nebo opakovaný přenos horké tlakové vody.
Vyznačuje se neuvěřitelnou schopností natáhnout se v průměru, což zajišťuje, že hadice obejme spoj a dokonale těsní (tj. hadici o průměru 3 mm můžete natáhnout na spoj o průměru 5 mm).
Přidejte k objednávce 5 dvojitých drátěných svorek za pouhých 99 pencí, které dokonale uchytí hadici na místě!
Máme více než 12leté zkušenosti s prodejem náhradních silikonových hadic Samco Sport a jsme hrdí na to, že jsme předním světovým distributorem silikonových hadic pro motocykly.
Díky širokému spektru univerzálních závodních dílů poskytujeme 100 % služby.
Vakuovou hadici Samco Sport lze použít pro celou řadu aplikací: kontrolu emisí, přetok radiátorů, stěrače a zejména pro výměnu odvzdušňovacích hadic karburátorů u motokrosových a silničních motocyklů.
Jedná se o vynikající produkt vhodný pro všechny typy motocyklů, aut a komerčních aplikací.
Přidejte k objednávce 5 dvojitých drátěných svorek za pouhých 99 pencí, které dokonale uchytí hadici na místě!
Hadice není vhodná pro vysokotlaká vodní zařízení nebo systému ohřevu vody.
Tato hadice není vhodná pro převod olejů.
Proč si vybrat silikonové hadice Samco Sport?
Doživotní záruka, 2letá záruka pro palivové aplikace.
Jen se přihlaste ke svému účtu a vyčkejte, dokud nebude synchronizace dokončena, knihy se poté automaticky stáhnou na #PRS_ORG#.
To je vše.
Mohu vám ještě s něčím pomoci?
Jste tam?
Omlouvám se, z důvodu zvýšení kvality budu muset tento chat ukončit, pokud do 2 minut neobdržím odpověď.
Uzavírám tento chat, protože jsme neobdržel žádnou odpověď.
Rád vám poradím prostřednictvím emailu nebo nás můžete opět kontaktovat, až se vám to bude více hodit.
> K oddělení bude potřeba, aby se ujistili, že jejich apky fungují na různých verzích iOS.
To není tak úplně pravda.
Stačí dát limit na verze iOS, které apka podporuje a pak jenom stačí provést aktualizace pro zařízení, které má nejnovější kompatibilní verzi iOS.
Takto v současné době funguje většina aplikací.
> A také proto, že Apple může často vydávat nové iOS a macOS verze.
Není tedy problémem spíš to, že se tak neděje dost často?
